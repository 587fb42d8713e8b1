"""MIDI I/O: ports (python-rtmidi), the input reader, outputs, the JACK watch, standard MIDI files."""
