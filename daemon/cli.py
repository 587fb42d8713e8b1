"""The `jamd` command line: one console script, one module per subcommand.

Each subcommand lives in `jamd.commands.<name>` and exposes `HELP` (one
line), `EXAMPLE` (one command line), optionally `DESCRIPTION` (longer text
for its own --help), `add_arguments(parser)` and
`run(args, cfg) -> int`.  This module only builds the parser, loads the
config, sets up logging and turns `JamdError`s into one line and an exit code.

`jamd run` holds SIGHUP back from the moment this module is imported: a reload
sent while it starts (`systemctl reload` right after `start`) would otherwise
end it (SIGHUP's default action, exit 129); held back, it is taken by `jamd
run`'s signal loop once the daemon is ready, and reloads the config then.
"""

from __future__ import annotations

import signal
import sys


def hold_reload_signal(argv: Sequence[str]) -> bool:
    """Block SIGHUP in this thread (and every thread started later) when `argv` (without the
    program name) is a `jamd run` command line; True if it did.  `jamd run` unblocks it
    only at exit; until its signal loop runs, a SIGHUP stays pending, then reloads."""
    if argv[:1] != ["run"] or not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "SIGHUP"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    return True


# as early as this process can: before the imports below, which take most of jamd's start
hold_reload_signal(sys.argv[1:])

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from . import __version__  # noqa: E402
from . import config as config_mod  # noqa: E402
from .commands.options import check_models  # noqa: E402
from .errors import JamdError, UsageError  # noqa: E402

log = logging.getLogger("jamd")

# Order is the order shown in --help.
COMMANDS = ("generate", "run", "service", "ports", "calibrate", "train", "export", "eval", "bench", "corpus")


def _command_modules() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"jamd.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"jamd.commands.{name}":
                raise
    return mods


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: ./config.yaml when present, else built-in defaults)")
    p.add_argument("--set", metavar="KEY.PATH=VALUE", action="append", default=[], dest="overrides",
                   help="override one config value, e.g. --set clock.bpm=96 (repeatable)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="log verbosity; 'debug' also shows tracebacks (default: logging.level)")


def build_parser() -> argparse.ArgumentParser:
    mods = _command_modules()
    examples = "\n".join(f"  {m.EXAMPLE}" for m in mods.values())
    parser = argparse.ArgumentParser(
        prog="jamd",
        description="jamd answers, continues or accompanies a player over MIDI, in time and in key, "
        "with small LSTM and GAN models run by ONNX Runtime.",
        epilog=f"examples, one per command:\n{examples}\n\n"
        "Every command takes --config PATH, --set key.path=value and --log-level. "
        "Run 'jamd COMMAND --help' for its options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jamd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in mods.items():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=f"example:\n  {mod.EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        _add_common(p)
        p.set_defaults(_module=mod, _parser=p)
    return parser


def check_not_empty(args: argparse.Namespace) -> None:
    """Refuse an empty or blank value of any string option (`--model ""`, `--source " "`, a
    positional folder): every one names a thing, and "" would silently mean the default or the
    current folder."""
    parser = getattr(args, "_parser", None)
    for action in parser._actions if parser is not None else ():
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and not v.strip():
                name = action.option_strings[-1] if action.option_strings else action.metavar or action.dest
                raise UsageError(f"{name} must not be empty or blank (received {v!r})")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # called with its own command line (tests, python -c): hold SIGHUP now, and give it back
    # after, so the calling process is left as it was
    held = argv is not None and hold_reload_signal(list(argv))
    try:
        return _main(argv)
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args.log_level == "debug"
    setup_logging(args.log_level or "info")
    try:
        check_not_empty(args)
        path = args.config if args.config is not None else config_mod.default_config_path()
        cfg = check_models(config_mod.load(path, args.overrides))
        if not args.log_level:
            setup_logging(cfg.logging.level)
            debug = cfg.logging.level == "debug"
        from .inference.runtime import warn_if_both_runtimes

        warn_if_both_runtimes()
        return int(args._module.run(args, cfg) or 0)
    except JamdError as exc:
        if debug:
            log.exception("failed")
        print(f"jamd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jamd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
