"""Which note-off ends which note-on: one rule for MIDI files and live input.

A pitch struck again while it still sounds (note-on, note-on, note-off,
note-off: a sustain pedal, a DAW's overlapping clips, a fast repeat on a
keyboard) ends the sounding note at the restrike and starts a new one there;
a note-off ends the note that sounds, and a note-off with nothing sounding is
ignored.  So "on on off off" is two notes, and every note ends by the second
note-off at the latest.  `jamd.midi.midifile_read` pairs a file's events with
these functions and `jamd.live.phrase.PhraseCapture` the player's, so a phrase
read from a file and the same phrase played live give the same notes.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")  # what identifies a sounding note: a pitch, or (channel, pitch)


def strike(held: dict[K, int], key: K, time: int) -> int | None:
    """A note-on of `key` at `time` (ticks or steps): it now sounds from `time`.

    Returns the onset of the note this restrike ends at `time`, or None when
    `key` was not sounding.
    """
    old = held.pop(key, None)
    held[key] = time
    return old


def release(held: dict[K, int], key: K) -> int | None:
    """A note-off of `key`: the onset of the note it ends, or None (nothing sounding)."""
    return held.pop(key, None)
