"""Config sections of the offline commands: `jamd corpus`, `train`, `eval` (no daemon key lives here)."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import spec as _spec

TRANSPOSITIONS = ("c", "all-keys")  # training.transpose: tunes moved to C major / A minor, or to all 12 keys
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")  # training.strategy (tf.distribute)


@dataclass(frozen=True)
class CorpusConfig:
    # a music21 corpus name (erk, essen, oneill, ryan, folk...), a folder of .krn/.abc/.mid/.musicxml,
    # or a list of them (one corpus: their union, each source's share reported)
    source: str | tuple[str, ...] = _spec("erk", filled=True)
    part: int = _spec(0, lo=0, hi=64)  # which part of a multi-part file is the melody
    cache_dir: str = _spec("")  # "": $XDG_CACHE_HOME/jamd/corpus or ~/.cache/jamd/corpus
    validation_fraction: float = _spec(0.1, lo=0.0, hi=0.5)
    split_seed: int = _spec(0, lo=0, hi=2**32 - 1)
    workers: int = _spec(0, lo=0, hi=256)  # 0: one per core
    shard_tunes: int = _spec(2000, lo=1, hi=10**6)  # kept tunes per cache shard (what a killed parse loses at most)


@dataclass(frozen=True)
class TrainingConfig:
    sequence_length: int = _spec(64, lo=2, hi=4096)
    units: int = _spec(256, lo=1, hi=4096)
    dropout: float = _spec(0.2, lo=0.0, hi=0.9)
    learning_rate: float = _spec(0.001, lo=1e-6, hi=1.0)
    batch_size: int = _spec(64, lo=1, hi=65536)
    epochs: int = _spec(50, lo=1, hi=10000)
    patience: int = _spec(5, lo=0, hi=1000)  # early stop after this many epochs without progress
    max_steps_per_epoch: int | None = _spec(None, lo=1, hi=10**9)
    out_dir: str = _spec("runs/lstm", filled=True)
    layers: int = _spec(1, lo=1, hi=8)  # stacked LSTM layers of `units` each (the seed: 1)
    metric_position: bool = _spec(True)  # the model also reads where each step falls in the bar
    transpose: str = _spec("c", choices=TRANSPOSITIONS)  # all-keys: every window in a random key
    shuffle_buffer: int = _spec(10000, lo=1, hi=10**7)  # windows shuffled in memory at once (tf.data)
    strategy: str = _spec("auto", choices=STRATEGIES)  # auto: mirrored on >1 GPU, multi-worker with a cluster
    cluster: str | None = _spec(None)  # "chief=host:port,worker=host:port"; None: TF_CONFIG, else one machine


@dataclass(frozen=True)
class GanConfig:
    # `jamd train --model gan|wgan|cgan`; the seed's sizes are in config.yaml's comments
    steps_per_bar: int = _spec(16, lo=2, hi=64)  # 16th steps per generated bar (16: 4/4)
    latent_dim: int = _spec(100, lo=1, hi=4096)
    generator_units: tuple[int, ...] = _spec(factory=lambda: (256, 512, 1024), lo=1, hi=8192)
    head: str = _spec("auto", choices=("auto", "flat", "autoregressive"))  # auto: flat for gan, else autoregressive
    head_units: int = _spec(128, lo=1, hi=4096)  # the autoregressive head's GRU
    pretrain_steps: int = _spec(2000, lo=0, hi=10**7)  # autoregressive head: maximum-likelihood steps first
    pretrain_learning_rate: float = _spec(0.001, lo=1e-7, hi=1.0)
    critic_warmup: int = _spec(300, lo=0, hi=10**7)  # after pretraining: critic-only steps
    finetune_learning_rate: float = _spec(0.00002, lo=1e-9, hi=1.0)  # a pretrained generator's adversarial rate
    lstm_units: int = _spec(64, lo=1, hi=4096)  # discriminator LSTM and BiLSTM (seed: 512)
    dense_units: tuple[int, ...] = _spec(factory=lambda: (512, 256), lo=1, hi=8192)
    dropout: float = _spec(0.5, lo=0.0, hi=0.9)
    pitch_line: bool = _spec(True)  # the critic also reads each note's pitch and interval (not the seed's)
    minibatch_std: bool = _spec(True)  # the critic sees the batch's spread (against mode collapse)
    critic_input: str = _spec("sampled", choices=("sampled", "soft"))  # what generated bars look like to it
    mismatched_pairs: bool = _spec(True)  # cgan: real bars after a wrong previous bar count as fake
    batch_size: int = _spec(64, lo=2, hi=65536)
    steps: int = _spec(3000, lo=1, hi=10**7)  # generator updates
    n_critic: int = _spec(5, lo=1, hi=100)  # critic updates per generator update (wgan, cgan)
    constraint: str = _spec("gp", choices=("gp", "clip"))
    clip_value: float = _spec(0.01, lo=1e-6, hi=10.0)
    gp_weight: float = _spec(10.0, lo=0.0, hi=1000.0)
    noise_std: float = _spec(0.1, lo=0.0, hi=10.0)
    l2: float = _spec(0.0001, lo=0.0, hi=10.0)  # the seed: 0.01 (code) or 0.1 (text); see config.yaml
    learning_rate: float = _spec(0.0002, lo=1e-7, hi=1.0)
    beta_1: float = _spec(0.5, lo=0.0, hi=0.999)
    beta_2: float = _spec(0.9, lo=0.0, hi=0.9999)
    monitor_every: int = _spec(100, lo=1, hi=10**6)
    monitor_bars: int = _spec(1000, lo=10, hi=100000)
    checkpoint_every: int = _spec(250, lo=1, hi=10**6)
    compile: bool = _spec(True)  # false: run eagerly (slow steps, no minute of graph building; for tests)
    out_dir: str = _spec("runs", filled=True)  # each variant trains in out_dir/<variant>


@dataclass(frozen=True)
class EvalConfig:
    n: int = _spec(100, lo=2, hi=100000)  # melodies per set
    bars: int = _spec(16, lo=1, hi=256)  # longest melody compared, in 4/4 bars of 16 steps
    markov_order: int = _spec(3, lo=1, hi=16)  # the baseline's context length, in symbols
    temperature: float = _spec(1.0, lo=0.0, hi=5.0)  # sampling temperature for every model
    piano_roll: int = _spec(4, lo=0, hi=32)  # melodies per set drawn in the piano-roll PNGs


@dataclass(frozen=True)
class HarmonyTrainingConfig:
    # `jamd train --model harmony`: the online harmony LSTM on music21's Bach chorales
    source: str = _spec("bach", filled=True)  # music21 corpus folder of four-part chorales
    units: int = _spec(128, lo=1, hi=4096)
    dropout: float = _spec(0.2, lo=0.0, hi=0.9)
    learning_rate: float = _spec(0.002, lo=1e-6, hi=1.0)
    batch_size: int = _spec(16, lo=1, hi=4096)  # chorales per batch
    epochs: int = _spec(80, lo=1, hi=10000)
    patience: int = _spec(10, lo=0, hi=1000)
    lookahead_share: float = _spec(0.5, lo=0.0, hi=1.0)  # beats trained with the beat's own melody shown
    out_dir: str = _spec("runs/harmony", filled=True)
