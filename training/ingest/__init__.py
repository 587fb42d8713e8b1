"""Corpus ingestion that scales: symusic for MIDI files, a sharded incremental cache, several sources.

- `midi`: a MIDI file read with symusic (C++) into jamd's `MidiRead`, with the
  semantics of jamd's own reader (`jamd.midi.midifile_read`);
- `keys`: music21's key analysis (`analyze('key')`) without building a stream;
- `shards`: the cache on disk, a journal of finished shards and the shards;
- `build`: parsing in worker processes, flushed shard by shard;
- `sharded`: the corpus object the trainers read (`ShardedCorpus`);
- `split`: the train/validation split that keeps Erk's held-out tunes held out;
- `write_midi`: a folder of MIDI files written from music21 tunes (benchmarks, tests).
"""
