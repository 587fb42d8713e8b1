"""Time and sync: the one clock, the sender thread, MIDI clock as master and as follower, Ableton Link."""
