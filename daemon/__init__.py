"""jamd: a real-time MIDI generation daemon."""

__version__ = "0.1.0"
