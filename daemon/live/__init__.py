"""The live engine: phrase capture, the engine thread and its modes, note streams, output shaping, the session."""
