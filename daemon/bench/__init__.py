"""Benchmarks and test support (`jamd bench`, the JACK test rig): never imported by `jamd run`."""
