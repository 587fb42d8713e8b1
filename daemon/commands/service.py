"""`jamd service`: a systemd unit that runs `jamd run` as a watched service.

The unit is written for this install and this config: ExecStart is the `jamd`
beside this Python (the virtual environment's), or `python -m jamd.cli`
when there is none, with the config file's absolute path, --set overrides and
--log-level as given here.  `Type=notify` with `WatchdogSec=`: `jamd run` says
READY=1 once its ports are open and its model loaded, and pings the watchdog
from its engine thread (`jamd.sync.notify`), so systemd restarts a jamd whose
engine hangs, as it does one that exits with an error (`Restart=on-failure`).
jamd never runs systemctl itself: `--install` writes the file and prints the
commands that enable and start it.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import pwd
import re
import sys
import tempfile
from pathlib import Path

from .. import __version__
from .. import config as config_mod
from ..config import Config, clip
from ..errors import UsageError
from . import options, paths

log = logging.getLogger("jamd.service")

HELP = "print or install a systemd unit that runs `jamd run` as a service with a watchdog"
EXAMPLE = "jamd service --install --user --config config.yaml"
DESCRIPTION = """\
Print a systemd unit for `jamd run` with this install and this config, or
write it with --install: a system unit in /etc/systemd/system (needs root;
the service runs as you, or --user-name, in the audio group), or with --user
a user unit in ~/.config/systemd/user. jamd prints the systemctl commands to
enable and start it; it never runs them. The unit waits for the sound cards
(sound.target) and, with midi.api jack, for JACK: it starts after --jack-unit
(jack.service), which you provide, running jackd as the same user as jamd.
See README.md, "Raspberry Pi"."""

UNIT_NAME = "jamd.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
RT_PRIORITY_LIMIT = 95  # LimitRTPRIO: above clock.realtime_priority, below the kernel's own threads
# A word systemd's command-line parser takes as it is; anything else is double-quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?")  # what systemd's User= accepts, as useradd does


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--install", action="store_true", help=f"write the unit ({UNIT_NAME}) instead of printing it")
    p.add_argument("--user", action="store_true",
                   help="a user unit (~/.config/systemd/user, `systemctl --user`) instead of a system one")
    p.add_argument("--unit-dir", metavar="DIR", help="write the unit into DIR instead (with --install)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing unit file (with --install); take a --user-name this machine "
                        "does not know (an account made later)")
    p.add_argument("--user-name", metavar="NAME",
                   help="the account a system unit runs jamd as (default: the one running this, or sudo's caller)")
    p.add_argument("--watchdog-sec", type=float, default=10.0, metavar="SECONDS",
                   help="systemd restarts jamd when its engine has not pinged for this long; 0: no watchdog "
                        "(default: 10)")
    p.add_argument("--jack-unit", default="jack.service", metavar="UNIT",
                   help="with midi.api jack, the unit that runs the JACK server (default: jack.service)")


def jamd_command(python: str | None = None) -> list[str]:
    """This install's jamd as an argv prefix: the `jamd` script beside `python` (default:
    sys.executable, not resolved, so a virtual environment's bin/ is kept), else
    `python -m jamd.cli`."""
    exe = Path(python or sys.executable).absolute()
    script = exe.parent / "jamd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(exe), "-m", "jamd.cli"]


def quote(word: str) -> str:
    """One word for a systemd command line (systemd.service(5), "Command lines"): '%' (a
    specifier) and '$' (a variable) doubled, double-quoted with C escapes unless plain.
    Raises UsageError for a word with a newline or a NUL, which no unit line can hold."""
    if "\n" in word or "\0" in word or "\r" in word:
        raise UsageError(f"{clip(repr(word))} cannot go into a systemd unit: it holds a line break or NUL")
    word = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_arguments(args: argparse.Namespace) -> list[str]:
    """`run` and the options this invocation passes on: --config (made absolute; ./config.yaml
    when none is given and it exists, since the service does not start in this folder), each
    --set, --log-level."""
    out = ["run"]
    config = args.config if args.config is not None else config_mod.default_config_path()
    if config is not None:
        out += ["--config", os.path.abspath(config)]
    for override in args.overrides or ():
        out += ["--set", override]
    if args.log_level:
        out += ["--log-level", args.log_level]
    return out


def service_user(args: argparse.Namespace) -> str:
    """The account a system unit runs as: --user-name, else sudo's caller, else this process's user."""
    name = args.user_name or os.environ.get("SUDO_USER") or getpass.getuser()
    if not _USER_NAME.fullmatch(name):
        raise UsageError(f"--user-name {clip(repr(name))}: not a user name systemd accepts")
    if args.user_name and not getattr(args, "force", False):
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise UsageError(f"--user-name {clip(repr(name))}: no such user on this machine "
                             "(create it first, or --force to write the unit anyway)") from None
    if name == "root":
        log.warning("the service will run jamd as root; --user-name NAME runs it as another account")
    return name


def is_loopback(host: str) -> bool:
    """True for this machine's own loopback address or name (OSC then needs no network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unit_text(args: argparse.Namespace, cfg: Config, command: list[str] | None = None) -> str:
    """The unit file for `args` (see `add_arguments`) and `cfg`, as text; `command`: the jamd
    argv prefix (default: `jamd_command()`)."""
    options.check_number(args.watchdog_sec, "--watchdog-sec", lo=0, what="; 0 turns the watchdog off")
    user = None if args.user else service_user(args)
    jack = cfg.midi.api == "jack"
    exec_start = " ".join(quote(w) for w in [*(command or jamd_command()), *run_arguments(args)])
    lines = [
        f"# {UNIT_NAME}: `jamd run` as a watched service, written by `jamd service` (jamd {__version__})",
        "# for this install and config; README.md, \"Raspberry Pi\", explains it.",
        "[Unit]",
        "Description=jamd, a real-time MIDI generation daemon",
        "# the sound cards (ALSA) are there: udev reaches sound.target once they are",
        "After=sound.target",
    ]
    if jack:
        if not re.fullmatch(r"[A-Za-z0-9:_.@\\-]+\.(service|target)", args.jack_unit):
            raise UsageError(f"--jack-unit {clip(repr(args.jack_unit))}: not a unit name (e.g. jack.service)")
        lines += [
            f"# midi.api is jack: start after the JACK server's unit, which you provide ({args.jack_unit},",
            "# running jackd as the same user as jamd). Wants= starts it with jamd, and does nothing",
            "# if there is no such unit; jamd exits with an error, and is restarted, while JACK is not up.",
            f"After={args.jack_unit}",
            f"Wants={args.jack_unit}",
        ]
    if cfg.osc.enabled and not is_loopback(cfg.osc.host):
        lines += [
            f"# OSC listens on {cfg.osc.host} (osc.host): start once the network is up (jamd retries",
            "# binding every few seconds anyway, and plays without OSC meanwhile)",
            "Wants=network-online.target",
            "After=network-online.target",
        ]
    lines += [
        "",
        "[Service]",
        "# jamd says READY=1 once its MIDI ports are open and its model is loaded",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        "# `systemctl reload jamd`: SIGHUP re-reads the config without stopping the music",
        "ExecReload=kill -HUP $MAINPID",
        "# relative paths in the config (a model file) resolve from where this unit was written",
        f"WorkingDirectory={os.getcwd().replace('%', '%%')}",
        "Restart=on-failure",
        "RestartSec=2",
    ]
    if args.watchdog_sec > 0:
        lines += [
            "# jamd pings from its engine thread; when it stops, systemd sends SIGABRT (every thread's",
            "# Python stack goes to the journal: PYTHONFAULTHANDLER) and restarts jamd",
            f"WatchdogSec={args.watchdog_sec:g}",
        ]
    lines += [
        "# real-time priority for the MIDI sender, and locked memory for JACK; in a user unit the",
        "# hard limits of the audio group cap them (/etc/security/limits.d/audio.conf)",
        f"LimitRTPRIO={RT_PRIORITY_LIMIT}",
        "LimitMEMLOCK=infinity",
        "Environment=PYTHONUNBUFFERED=1",
        "Environment=PYTHONFAULTHANDLER=1",
    ]
    server = os.environ.get("JACK_DEFAULT_SERVER")
    if jack and server:
        lines.append(f"Environment={quote('JACK_DEFAULT_SERVER=' + server)}")
    if user is not None:
        lines += [f"User={user}", "SupplementaryGroups=audio"]
    lines += ["", "[Install]", f"WantedBy={'default.target' if args.user else 'multi-user.target'}"]
    return "\n".join(lines) + "\n"


def default_unit_dir(user: bool) -> Path:
    """Where systemd looks for units: /etc/systemd/system, or for a user unit
    $XDG_CONFIG_HOME/systemd/user (default ~/.config/systemd/user)."""
    if not user:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def install(text: str, args: argparse.Namespace) -> Path:
    """Write `text` as UNIT_NAME into --unit-dir or the default folder, atomically; an existing
    file only with --force.  Raises UsageError (one line) for a path jamd cannot use."""
    folder = Path(args.unit_dir) if args.unit_dir else default_unit_dir(args.user)
    option = "--unit-dir" if args.unit_dir else "unit folder"
    target = folder / UNIT_NAME
    if target.exists() and not args.force:
        raise UsageError(f"{clip(str(target))} exists; --force replaces it")
    try:
        paths.check_output_file(target, option)
    except UsageError as exc:
        if args.unit_dir or args.user:
            raise
        raise UsageError(f"{exc} (a system unit needs root: sudo; or --user for a user unit)") from None
    with paths.writing(target, option):
        fd, tmp = tempfile.mkstemp(prefix=f".{UNIT_NAME}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)  # systemd never reads half a unit
        except BaseException:
            os.unlink(tmp)
            raise
    return target


def next_steps(target: Path, args: argparse.Namespace) -> list[str]:
    """The commands that enable and start the written unit, and read its log."""
    ctl, journal = ("systemctl --user", "journalctl --user") if args.user else ("sudo systemctl", "journalctl")
    out = [f"wrote {target}", "enable and start it with:", f"  {ctl} daemon-reload",
           f"  {ctl} enable --now {UNIT_NAME}"]
    if args.user:
        out.append(f"  sudo loginctl enable-linger {getpass.getuser()}   # start it at boot, without a login")
    if args.unit_dir and Path(args.unit_dir).absolute() != default_unit_dir(args.user):
        out.append(f"  ({target.parent} is not where systemd looks: `{ctl} link {target}` adds it there)")
    out.append(f"its log: {journal} -u jamd -f")
    return out


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not args.install:
        for given, option in ((args.unit_dir, "--unit-dir"), (args.force and not args.user_name, "--force")):
            if given:
                raise UsageError(f"{option} only applies with --install")
    if args.user and args.user_name:
        raise UsageError("--user-name is for a system unit; a user unit runs as its user")
    text = unit_text(args, cfg)
    if not args.install:
        sys.stdout.write(text)
        return 0
    target = install(text, args)
    print("\n".join(next_steps(target, args)))
    return 0
