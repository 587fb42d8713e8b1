"""`jamd eval`: the seed's metrics (chapter 4, appendix A.3) and Yang & Lerch's.

The data path, one module each:

* `melodies`  - the sets compared: corpus tunes, folders of MIDI files, model output;
* `models`    - "something that generates melodies" (the LSTM now, GANs later);
* `markov`    - the order-n Markov-chain baseline, generated and measured like a model;
* `features`  - one feature vector per melody (pitch, pitch class, note length...);
* `distances` - intra-/inter-set distances, KDEs, overlap area, KL divergence;
* `manhattan` - Mitzenmacher-Owen distance of grouped adjacent pitches;
* `nll`       - held-out negative log-likelihood per token and per note;
* `compare`   - runs all of the above on the sets and checks the quality bars;
* `plots`, `report` - PNGs, Markdown and JSON;
* `pipeline`  - one `jamd eval` run, from the options to the report.

Nothing here imports TensorFlow; matplotlib is imported only by `plots`.
"""
