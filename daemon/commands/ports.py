"""`jamd ports`: the MIDI systems python-rtmidi offers and the ports on each."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..midi.ports import DISPLAY, candidates, list_ports

HELP = "list the MIDI systems (ALSA, JACK, CoreMIDI, Windows MM) and the ports on each"
EXAMPLE = "jamd ports"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the listing as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    listing = list_ports()
    auto = [name for name, skip in candidates("auto") if not skip and not listing[name]["error"]]
    if args.json:
        print(json.dumps({"auto": auto[0] if auto else None, "apis": listing}, indent=2))
        return 0
    for name, entry in listing.items():
        mark = "  <- midi.api auto" if auto and name == auto[0] else ""
        print(f"{DISPLAY[name]} ({name}){mark}")
        if entry["error"]:
            print(f"  unusable: {entry['error']}")
            continue
        for kind, label in (("sources", "sources (for midi.connect_input)"),
                            ("destinations", "destinations (for midi.connect_output)")):
            ports = entry[kind]
            print(f"  {label}: {', '.join(repr(p) for p in ports) if ports else 'none'}")
    if not auto:
        print("no usable MIDI system for midi.api auto: start JACK (e.g. `jackd -d dummy &`) "
              "or use `jamd generate`")
    return 0
