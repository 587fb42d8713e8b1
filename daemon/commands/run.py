"""`jamd run`: the real-time daemon.

Loads the model, opens a virtual MIDI output and input (or existing ports),
then answers, continues or accompanies the player until SIGINT/SIGTERM.
SIGHUP reloads config.yaml without stopping the clock.

Signals are handled synchronously: they are blocked in every thread (threads
inherit the mask, so they are blocked before any thread starts) and the main
thread waits for them with `sigwait`.  A worker thread that fails sends us
SIGUSR1.  So the main thread is the only place that reloads or shuts down,
and no signal handler ever runs in the middle of other code.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from .. import config as config_mod
from ..config import Config, clip
from ..errors import JamdError
from ..inference.bar_source import open_bar_source
from ..inference.forecast import MelodyForecast
from ..inference.harmony import HarmonyModel
from ..live import controls, saved_state
from ..live.change_log import ChangeLog, timer
from ..live.harmony_part import needed_at_start
from ..live.osc import OscServer
from ..live.session import LiveSession
from ..midi.jack_memory import release_jack_shared_memory
from ..midi.jack_watch import JackWatch
from ..midi.outputs import SentLog
from ..midi.ports import DISPLAY, open_ports
from ..midi.realtime import ask_realtime
from ..sync.notify import Notifier
from . import options
from .options import check_models
from .run_process import Waiter, exit_if_threads_linger

log = logging.getLogger("jamd.run")

HELP = "run the real-time daemon: answer, continue or accompany a player over MIDI"
EXAMPLE = "jamd run --mode call-response --bpm 100"
DESCRIPTION = """\
Run the real-time daemon. jamd opens a virtual MIDI output ("jamd out") and
input ("jamd in"), named from midi.*; connect a synth or DAW track to the
output and play into the input (or name a USB synth and keyboard in
midi.connect_output / midi.connect_input: jamd waits for them, and reconnects
when they are unplugged and plugged back). It listens to your phrase, finds its
key, and plays in time with its own clock (clock.bpm, 16th-note grid).

modes (--mode or live.mode; switch live with control.mode_cc):
  call-response  wait for a phrase, answer it from the next bar line, listen again
  continuous     play without end from live.default_seed; each phrase re-seeds it
  accompany      chords (harmony.chords_channel, 2) and a bass (harmony.bass_channel,
                 3) under your melody, in your key, on the beat: each beat's chord
                 is chosen harmony.decide_ms before it from what you played
                 (harmony.parts: chords, bass, melody: a second melody instead)
  harmony.under_melody (or control.harmony_cc) adds chords and bass under jamd's
  own melody in continuous and call-response; harmony.rhythm sets how often the
  chord may change (beat, half-bar, bar), harmony.pattern how it is played.

A phrase ends after live.silence_bars of silence, on live.end_cc, or at
live.max_phrase_bars. Notes count on live.input_channels (default: all but
10, the drums). CCs (control.*, on control.channel) set temperature, mode,
start/stop, panic, answer length, model and the harmony (CCs 21-27):
  control.mode_cc          0-42 continuous, 43-85 call-response, 86-127 accompany
  control.model_select_cc  value n plays model.models[n] (0: the first, 1: the
                           second, ...; a value past the end: the last)
  control.harmony_cc       >= 64 chords and bass on, < 64 off
At start jamd sends All Notes Off and All Sound Off (CC 123, CC 120) on
output.channel, metronome.channel and the harmony channels, which silences a
note a killed jamd left
sounding. SIGHUP reloads the config file; SIGINT or SIGTERM stop cleanly:
every sounding note gets its note-off, then CC 123.

sync with a DAW (--clock or clock.*):
  --clock send     jamd is master: MIDI clock, Start/Stop/Continue and Song
                   Position Pointer on the output (or on clock.port); slave the
                   DAW to jamd's port
  --clock follow   jamd is slave: it follows the clock and transport the DAW
                   sends to "jamd in" (tempo, Start, Stop, Continue, position);
                   after clock.loss_timeout_ms without clock it stops cleanly
  --clock link     jamd joins an Ableton Link session (pip install 'jamd[link]',
                   GPLv2+): tempo and bar phase from the network's peers
  output.offset_ms lines jamd up with the DAW's latency (negative: later).
  --count-in BARS and --metronome click on metronome.channel (10: drums).

No MIDI system? On Linux without a sound card start JACK first, e.g.
  jackd -n jamd --no-realtime -d dummy &  and  export JACK_DEFAULT_SERVER=jamd
or write files instead with `jamd generate`."""

# Switch threads every 0.5 ms instead of 5 ms: when the engine thread is busy
# in Python (key detection), the sender waking for a deadline gets the GIL
# within this time, which its 1 ms spin absorbs.
SWITCH_INTERVAL_S = 0.0005


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=config_mod.MODES, help="default: live.mode")
    p.add_argument("--model", metavar="NAME|PATH", help="model name or .onnx path (default: model.name)")
    p.add_argument("--bpm", type=float, help="tempo (default: clock.bpm)")
    p.add_argument("--api", choices=config_mod.MIDI_APIS, help="MIDI system (default: midi.api)")
    p.add_argument("--clock", choices=("internal", "send", "follow", "link"),
                   help="internal: jamd's own clock; send: also be MIDI clock master; "
                        "follow: slave to the MIDI clock on the input; link: join an Ableton Link "
                        "session (jamd[link]) (default: clock.source/clock.send)")
    p.add_argument("--count-in", type=int, metavar="BARS", help="bars of clicks before jamd starts "
                   "(default: metronome.count_in_bars)")
    p.add_argument("--metronome", action="store_true", default=None, help="click every beat (metronome.enabled)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop by itself after this many seconds; 0 (the default): run until SIGINT/SIGTERM")


def _options(args: argparse.Namespace) -> dict[str, tuple]:
    """This command's options as {option: (config key, value)} for `options.apply`."""
    out: dict[str, tuple] = {
        "--mode": ("live.mode", getattr(args, "mode", None)), "--model": ("model.name", getattr(args, "model", None)),
        "--bpm": ("clock.bpm", getattr(args, "bpm", None)), "--api": ("midi.api", getattr(args, "api", None)),
        "--count-in": ("metronome.count_in_bars", getattr(args, "count_in", None)),
        "--metronome": ("metronome.enabled", getattr(args, "metronome", None)),
    }
    sync = getattr(args, "clock", None)
    if sync is not None:  # source and send change together: one alone may break their rule
        source = {"follow": "midi", "link": "link"}.get(sync, "internal")
        out["--clock"] = ({"clock.source": source, "clock.send": sync == "send"}, sync)
    return out


def load_config(args: argparse.Namespace) -> Config:
    """Config file + --set + this command's options (what SIGHUP re-reads), with model.models checked."""
    path = args.config if getattr(args, "config", None) is not None else config_mod.default_config_path()
    cfg = config_mod.load(path, getattr(args, "overrides", None))
    return check_models(options.apply(cfg, _options(args)))


def check_harmony_models(cfg: Config, running: Config) -> None:
    """A reload that names another harmony or forecast model: load it now, so a corrupt or wrong
    file is refused with the old config kept (`ModelError`), not found out at the next phrase."""
    for key, name, old in (("harmony.model", cfg.harmony.model, running.harmony.model),
                           ("harmony.forecast_model", cfg.harmony.forecast_model, running.harmony.forecast_model)):
        if name is None or name == old:
            continue
        try:
            if key == "harmony.model":
                HarmonyModel.load(name, cfg.model)
            else:
                MelodyForecast.load(name, cfg.model, cfg.harmony.forecast_rollouts, None)
        except JamdError as exc:
            raise type(exc)(f"{key}: {exc}") from None


def explicit_keys(args: argparse.Namespace) -> set[str]:
    """The config keys the command line set (options and --set): they win over the saved state."""
    keys = {key for key, value in _options(args).values() if value is not None and isinstance(key, str)}
    return keys | options.set_keys(args)


def check_duration(duration: float | None) -> None:
    """--duration: seconds, finite and not negative; 0 (like None) means no limit."""
    options.check_number(duration, "--duration", lo=0, what="; 0 runs until SIGINT/SIGTERM")


def warn_unused(cfg: Config) -> None:
    """One warning for a config value this run ignores (a silent no-op misleads)."""
    if cfg.clock.port is not None and not cfg.clock.send:
        why = "following an outside clock" if cfg.clock.source == "midi" else "clock.send is false"
        log.warning("clock.port %s is unused: jamd sends no MIDI clock when %s", clip(repr(cfg.clock.port)), why)


def _warm_up_key_finder() -> None:
    # Key detection is plain Python now (jamd.music.keys, no music21); one call on the
    # engine thread before it plays compiles nothing but touches its code paths once,
    # and marks the point after which all that is loaded stays (the engine's gc.freeze).
    try:
        from ..music.keys import detect_key
        from ..tokens import Note

        detect_key([Note(0, 60, 4), Note(4, 64, 4), Note(8, 67, 4)])
    except Exception as exc:
        log.warning("key detection is not available: %s", exc)


def run(args: argparse.Namespace, cfg: Config) -> int:
    code = _run(args, cfg)
    exit_if_threads_linger(code)
    return code


def _run(args: argparse.Namespace, cfg: Config) -> int:
    t0 = time.perf_counter()
    check_duration(args.duration)
    cfg = options.apply(cfg, _options(args))  # the CLI checked model.models as the config loaded
    cfg, restored = saved_state.restore(cfg, explicit_keys(args))  # the last run's mode, model, ...
    warn_unused(cfg)
    waiter = Waiter()
    notifier = Notifier.from_environ()  # systemd's Type=notify (jamd service); a no-op elsewhere
    session: LiveSession | None = None
    ports = None
    watch: JackWatch | None = None
    sent_log: SentLog | None = None
    osc: OscServer | None = None
    try:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if cfg.osc.enabled:  # tried first: a port in use or an address not up yet costs one warning
            osc = OscServer(cfg.osc)  # then jamd plays on without OSC, and it retries in the background
        model_cfg = cfg.model
        notifier.status(f"loading model {cfg.model.name}")
        session_ref: list[LiveSession] = []
        preloaded = {cfg.model.name: open_bar_source(cfg.model.name, model_cfg)}
        # chords and bass from the first bar: their model is checked before the ports open too
        harmony_preloaded = {}
        if needed_at_start(cfg):
            try:
                harmony_preloaded[cfg.harmony.model] = HarmonyModel.load(cfg.harmony.model, model_cfg)
            except JamdError as exc:
                raise type(exc)(f"harmony.model: {exc}") from None

        def open_model(name: str):
            # the model loaded before the ports opened is used once, not loaded twice
            return preloaded.pop(name, None) or open_bar_source(name, model_cfg)

        def open_harmony(name: str) -> HarmonyModel:
            return harmony_preloaded.pop(name, None) or HarmonyModel.load(name, model_cfg)

        def on_message(message: list[int], t_ns: int) -> None:
            if session_ref:
                session_ref[0].midi_in(message, t_ns)

        notifier.status("opening MIDI ports")
        ports = open_ports(cfg.midi, on_message, clock_in=cfg.clock.source == "midi",
                           clock_port=cfg.clock.port if cfg.clock.send else None,
                           reader_priority=cfg.clock.realtime_priority - 1, follow_devices=True)
        if ports.api == "jack":
            # rtmidi keeps playing into a dead server without a word: listen for its shutdown
            watch = JackWatch.open(f"{cfg.midi.client_name}-watch", waiter.wake_from_thread, ports.on_ports)
            # every JACK client is open: drop libjack's lock on the server's
            # segment (~100 MB that jackd owns and keeps locked) from jamd's RSS
            release_jack_shared_memory()
        output, clock_output = ports.output, ports.clock_output
        if os.environ.get("JAMD_SENT_LOG"):  # what jamd sent, for the JACK test rig (SentLog)
            sent_log = SentLog(os.environ["JAMD_SENT_LOG"])
            output, clock_output = sent_log.wrap(output), clock_output and sent_log.wrap(clock_output)
        session = LiveSession(cfg, output, open_model, clock_output=clock_output, open_harmony=open_harmony)
        session_ref.append(session)
        session.on_error(lambda _exc: waiter.wake_from_thread())
        session.engine.warm_up = _warm_up_key_finder
        session.engine.watchdog = notifier.watchdog
        session.engine.saver = restored.saver(session.engine)
        # a fader sweep's last value is logged within a second of its end, by a timer
        session.engine.change_log = ChangeLog(controls.log, later=timer)
        session.start()
        if ports.devices is not None:  # systemd's STATUS follows the devices (rate-limited like the log)
            ports.devices.notify = lambda where, e=session.engine: notifier.status(
                f"running: mode {e.mode}, model {e.model_name}, {where}")
        ports.watch(session.engine.inbox.put, events=watch is not None and watch.hears_ports)  # devices (connect_*)
        if osc is not None:
            osc.start(session.engine.inbox.put)
        # The main thread holds the GIL briefly (signals, reloads); at normal
        # priority a busy machine could preempt it right then and stall the sender.
        ask_realtime(cfg.clock.realtime_priority - 2, "main")
        log.info("ready in %.2f s: %s, out %r, in %r, %s, mode %s, model %s%s; clock origin %d ns",
                 time.perf_counter() - t0, DISPLAY[ports.api], ports.output_name, ports.input_name,
                 _describe_sync(cfg, session, ports), cfg.live.mode, cfg.model.name,
                 f", chords and bass from {cfg.harmony.model}" if needed_at_start(cfg) else "",
                 session.clock.origin_ns)
        notifier.ready(f"running: mode {cfg.live.mode}, model {cfg.model.name}, out {ports.output_name!r}")
        return _serve(args, session, waiter, watch, restored)
    finally:
        notifier.stopping()
        try:
            if session is not None:
                session.close()
                change_log = getattr(session.engine, "change_log", None)
                if change_log is not None:  # the last value of a sweep that ended just now
                    change_log.flush_all()
        finally:
            if osc is not None:
                osc.close()
            if watch is not None:
                watch.close()
            if ports is not None:
                ports.close()
            if sent_log is not None:
                sent_log.close()
            waiter.restore()
            notifier.close()


def _describe_sync(cfg: Config, session: LiveSession, ports) -> str:
    if cfg.clock.source == "midi":
        return f"following the MIDI clock on {ports.input_name!r}"
    if cfg.clock.source == "link":
        return "following Ableton Link" + (", sending MIDI clock" if cfg.clock.send else "")
    text = session.clock.describe()
    if cfg.clock.send:
        text += f", sending MIDI clock on {ports.clock_output_name or ports.output_name!r}"
    return text


def _serve(args: argparse.Namespace, session: LiveSession, waiter: Waiter, watch: JackWatch | None = None,
           restored: saved_state.Restored | None = None) -> int:
    deadline = time.monotonic() + args.duration if args.duration else None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if timeout == 0.0:
            log.info("--duration reached; stopping")
            return 0
        signum = waiter.wait(timeout)
        if signum is None:
            continue
        if signum in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)):
            log.info("%s: stopping", signal.Signals(signum).name)
            return 0
        if signum == getattr(signal, "SIGHUP", None):
            try:
                cfg = load_config(args)
                if restored is not None:  # the restored values stay unless config.yaml changed that key
                    cfg = restored.onto(cfg)
                check_harmony_models(cfg, session.engine.cfg)
            except JamdError as exc:
                log.error("config not reloaded, the old one stays in force: %s", exc)
                continue
            log.info("config reloaded")
            session.engine.reload(cfg)
            continue
        if watch is not None and watch.lost:
            log.error("the JACK server stopped: jamd's ports are gone; exiting (start JACK, then jamd run again)")
            return 1
        err = session.error
        if err is not None:
            log.error("stopping after an internal error: %s", err)
            return 1
