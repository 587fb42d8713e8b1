"""Each GAN variant's training loop, the export with its parity check, and generation from the export.

CI does not retrain the shipped GANs: tiny networks (a handful of units, 8-step
bars) train for a few steps on the tunes of music21's erk5.abc.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from corpora import erk5_folder

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from jamd import config  # noqa: E402
from jamd.cli import main  # noqa: E402
from jamd.errors import JamdError  # noqa: E402
from jamd.inference.gan import BarGenerator  # noqa: E402

# eager steps: building the compiled graphs takes longer than these few steps
TINY = ["gan.latent_dim=4", "gan.generator_units=[8]", "gan.lstm_units=4", "gan.dense_units=[8]",
        "gan.batch_size=8", "gan.n_critic=2", "gan.monitor_bars=20", "gan.monitor_every=1",
        "gan.checkpoint_every=1", "gan.compile=false", "gan.pretrain_steps=1", "gan.critic_warmup=1",
        "corpus.workers=1",
        "corpus.validation_fraction=0.2"]


@pytest.fixture(scope="module")
def erk5(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan")
    overrides = [*TINY, *erk5_folder(tmp)]
    return tmp, overrides


def _bars(cfg):
    from jamd.training.corpus import load_corpus
    from jamd.training.gan_data import extract_bars

    corpus = load_corpus(cfg.corpus, progress=False)
    return corpus, extract_bars(corpus, corpus.split()[0], cfg.gan.steps_per_bar)


@pytest.mark.train
@pytest.mark.parametrize("variant, settings", [("gan", []), ("wgan", ["gan.constraint=clip"]),
                                               ("wgan", ["gan.head=flat"]),
                                               ("cgan", ["gan.head=flat", "gan.critic_input=soft"]),
                                               ("cgan", [])])
def test_each_variant_trains(erk5, variant, settings):
    from jamd.training.gan_trainer import Trainer, vocab_pitches

    _, overrides = erk5
    cfg = config.load(None, [*overrides, "gan.steps_per_bar=8", *settings])
    corpus, bars = _bars(cfg)
    assert bars.bars.shape[1] == 8 and len(bars) > 50
    trainer = Trainer(variant, cfg.gan, len(corpus.vocab), vocab_pitches(corpus.vocab))
    assert any(layer.name == "d_pitch_line" for layer in trainer.critic.layers)
    # gan.head auto: the seed's flat output for gan, the autoregressive head for wgan and cgan
    assert trainer.autoregressive == (variant != "gan" and "gan.head=flat" not in settings)
    assert trainer.generator.outputs[-1].shape[1:] == (8, len(corpus.vocab))
    inputs = (["z", "prev"] if variant == "cgan" else ["z"]) + (["noise"] if trainer.autoregressive else [])
    assert [i.name for i in trainer.generator.inputs] == inputs
    assert trainer.critic.output.shape[1:] == (1,)
    rng = np.random.default_rng(0)
    def changed(before, after) -> bool:
        return any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))

    if trainer.autoregressive:
        # gan.pretrain_steps=1: a maximum-likelihood step first, the critic resting
        g0, d0 = trainer.generator.get_weights(), trainer.critic.get_weights()
        losses = trainer.train_step(bars, rng)
        assert np.isfinite(losses["mle"]) and np.isnan(losses["d_loss"]), losses
        assert changed(g0, trainer.generator.get_weights()) and not changed(d0, trainer.critic.get_weights())
        # gan.critic_warmup=1: then the critic alone
        # (the generator's BatchNorm statistics move as it makes the critic's fakes; its weights must not)
        def g_weights() -> list[np.ndarray]:
            return [v.numpy().copy() for v in trainer.generator.trainable_variables]

        g1, d1 = g_weights(), trainer.critic.get_weights()
        losses = trainer.train_step(bars, rng)
        assert np.isfinite(losses["d_loss"]) and np.isnan(losses["g_loss"]), losses
        assert changed(d1, trainer.critic.get_weights()) and not changed(g1, g_weights())
    before = [w.copy() for w in trainer.generator.get_weights()]
    losses = trainer.train_step(bars, rng)
    assert all(np.isfinite(losses[k]) for k in ("d_loss", "g_loss", "distance")) and np.isnan(losses["mle"]), losses
    after = trainer.generator.get_weights()
    assert changed(before, after)
    if "gan.constraint=clip" in settings:
        assert max(float(np.abs(w).max()) for w in trainer.critic.get_weights()) <= cfg.gan.clip_value + 1e-7


def test_the_critic_reads_pitches_and_intervals_over_holds_and_rests():
    import keras

    from jamd.tokens import Vocabulary
    from jamd.training.gan_models import PitchLine
    from jamd.training.gan_trainer import vocab_pitches

    vocab = Vocabulary.from_pitches(range(60, 73))  # centre 66
    bar = keras.ops.one_hot(np.array([vocab.encode("r 60 _ 62 r _ 72 67".split())]), len(vocab))
    out = np.asarray(PitchLine(vocab_pitches(vocab))(bar))
    assert out.shape == (1, 8, len(vocab) + 2) and np.array_equal(out[..., : len(vocab)], np.asarray(bar))
    pitch, interval = out[0, :, -2] * 12, out[0, :, -1] * 12
    assert np.allclose(pitch, [0, -6, 0, -4, 0, 0, 6, 1])
    # the first note has no interval; a hold or a rest keeps the note before sounding for the next one
    assert np.allclose(interval, [0, 0, 0, 2, 0, 0, 10, -5])


@pytest.mark.train
@pytest.mark.parametrize("variant", ["wgan", "cgan"])
def test_train_resume_export_generate(erk5, variant):
    tmp, overrides = erk5
    sets = [a for o in overrides for a in ("--set", o)]
    run_dir, model = tmp / f"run-{variant}", tmp / f"{variant}.onnx"
    args = ["train", "--model", variant, "--out", str(run_dir), "--export", str(model), "--no-progress", *sets]
    # after only the pretraining and critic warm-up steps there is no GAN generator to keep
    assert main([*args, "--steps", "2"]) != 0
    assert (run_dir / "pretrained_generator.keras").is_file()
    # resumes after them, for one adversarial step
    assert main([*args, "--steps", "3"]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == 3 and len(state["history"]["g_loss"]) == 3 and len(state["monitor"]) == 3
    assert state["best"]["step"] == 3 and state["pretrained"]["step"] == 1
    assert (run_dir / "loss.png").stat().st_size > 5000
    assert len((run_dir / "losses.csv").read_text().splitlines()) == 4  # header + one line per step
    h = state["history"]
    assert np.isfinite(h["mle"][0]) and np.isnan(h["g_loss"][1]) and np.isfinite(h["d_loss"][1:]).all()

    # one more step resumes from the checkpoint at step 3
    assert main([*args, "--steps", "4"]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == 4 and len(state["history"]["d_loss"]) == 4
    assert np.isfinite(state["history"]["g_loss"][2:]).all()

    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["kind"] == ("cgan-bar" if variant == "cgan" else "gan-bar")
    assert meta["head"] == "autoregressive" and set(meta["outputs"]) == {"ids", "logits"}
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4 and meta["steps_per_bar"] == 16
    assert meta["latent_dim"] == 4 and meta["training"]["figures"]["steps_run"] == 4
    assert meta["corpus"]["bars"]["bars"] > 20

    gen = BarGenerator.load(str(model))
    assert gen.conditional == (variant == "cgan") and gen.steps_per_bar == 16 and gen.autoregressive
    bars = gen.bars(5, 1.0, np.random.default_rng(0))
    assert len(bars) == 5 and all(len(b) == 16 and "/" not in b for b in bars)
    out = tmp / f"{variant}.mid"
    assert main(["generate", "--model", str(model), "--bars", "4", "--random-seed", "1", "--out", str(out)]) == 0
    from jamd.midi.midifile import read_midi_notes

    notes, _ = read_midi_notes(out)
    assert notes and max(n.end for n in notes) <= 16 + 4 * 16

    if variant == "wgan":
        # the pretrained generator, exported with the selection the daemon is to use
        other = tmp / "pretrained.onnx"
        assert main(["export", str(run_dir), "--out", str(other), "--generator", "pretrained",
                     "--selection", '{"candidates": 3}', *sets]) == 0
        meta = json.loads(other.with_suffix(".json").read_text())
        assert meta["generator"] == {"which": "pretrained", "step": 1} and meta["selection"] == {"candidates": 3}
        assert BarGenerator.load(str(other)).selection.candidates == 3
        bad = tmp / "bad.onnx"
        assert main(["export", str(run_dir), "--out", str(bad), "--selection", '{"candidate": 3}', *sets]) == 2
        assert not bad.exists()


@pytest.mark.train
def test_export_fails_loudly_when_parity_breaks(erk5, monkeypatch):
    import jamd.export.gan_onnx as go

    tmp, overrides = erk5
    run_dir = tmp / "run-wgan"
    if not (run_dir / "best_generator.keras").exists():
        pytest.skip("needs the wgan run of test_train_resume_export_generate")
    monkeypatch.setattr(go, "parity", lambda *a, **k: 0.5)
    target = tmp / "broken.onnx"
    with pytest.raises(JamdError, match=r"export parity failed: .* differ by 0.5 over 64 bars"):
        go.export_gan_run(run_dir, target, config.load(None, overrides))
    assert not target.exists()
