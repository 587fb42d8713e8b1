"""The one exception family of jamd.

Anything a user can get wrong (a config value, a path, a seed token, a MIDI
system that is not there) raises a `JamdError` subclass with a message that
fits on one line and names the key, path or value.  The CLI prints that line
and exits with the error's `exit_code`; tracebacks appear only at
`--log-level debug`.
"""

from __future__ import annotations


class JamdError(Exception):
    """A user-facing error: one line, one exit code."""

    exit_code = 1


class ConfigError(JamdError):
    """A config file or `--set` override that cannot be used."""

    exit_code = 2


class UsageError(JamdError):
    """A bad command-line value (seed token, option combination...)."""

    exit_code = 2


class ModelError(JamdError):
    """A model file that is missing, corrupt or of the wrong kind."""

    exit_code = 3


class DataError(JamdError):
    """Input data (corpus, MIDI file, folder) that cannot be used."""

    exit_code = 4


class MidiSystemError(JamdError):
    """No usable MIDI system or port."""

    exit_code = 2
