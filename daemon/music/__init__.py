"""Music theory the daemon needs: key detection (music21) and transposition."""
