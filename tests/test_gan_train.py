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
from jamd.gan import BarGenerator  # noqa: E402

# eager steps: building the compiled graphs takes longer than these few steps
TINY = ["gan.latent_dim=4", "gan.generator_units=[8]", "gan.lstm_units=4", "gan.dense_units=[8]",
        "gan.batch_size=8", "gan.n_critic=2", "gan.monitor_bars=20", "gan.monitor_every=1",
        "gan.checkpoint_every=1", "gan.compile=false", "corpus.workers=1", "corpus.validation_fraction=0.2"]


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
                                               ("cgan", ["gan.critic_input=soft"])])
def test_each_variant_trains(erk5, variant, settings):
    from jamd.training.train_gan import Trainer

    _, overrides = erk5
    cfg = config.load(None, [*overrides, "gan.steps_per_bar=8", *settings])
    corpus, bars = _bars(cfg)
    assert bars.bars.shape[1] == 8 and len(bars) > 50
    trainer = Trainer(variant, cfg.gan, len(corpus.vocab))
    assert trainer.generator.output.shape[1:] == (8, len(corpus.vocab))
    assert [i.name for i in trainer.generator.inputs] == (["z", "prev"] if variant == "cgan" else ["z"])
    assert trainer.critic.output.shape[1:] == (1,)
    before = [w.copy() for w in trainer.generator.get_weights()]
    rng = np.random.default_rng(0)
    losses = trainer.train_step(bars, rng)
    assert all(np.isfinite(v) for v in losses.values()), losses
    after = trainer.generator.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    if "gan.constraint=clip" in settings:
        assert max(float(np.abs(w).max()) for w in trainer.critic.get_weights()) <= cfg.gan.clip_value + 1e-7


@pytest.mark.train
@pytest.mark.parametrize("variant", ["wgan", "cgan"])
def test_train_resume_export_generate(erk5, variant):
    tmp, overrides = erk5
    sets = [a for o in overrides for a in ("--set", o)]
    run_dir, model = tmp / f"run-{variant}", tmp / f"{variant}.onnx"
    args = ["train", "--model", variant, "--out", str(run_dir), "--export", str(model), "--no-progress", *sets]
    assert main([*args, "--steps", "1"]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == 1 and len(state["history"]["g_loss"]) == 1 and state["monitor"]
    assert (run_dir / "loss.png").stat().st_size > 5000
    assert len((run_dir / "losses.csv").read_text().splitlines()) == 2  # header + one line per step

    # one more step resumes from the checkpoint at step 1
    assert main([*args, "--steps", "2"]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == 2 and len(state["history"]["d_loss"]) == 2
    assert all(np.isfinite(state["history"]["d_loss"]))

    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["kind"] == ("cgan-bar" if variant == "cgan" else "gan-bar")
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4 and meta["steps_per_bar"] == 16
    assert meta["latent_dim"] == 4 and meta["training"]["figures"]["steps_run"] == 2
    assert meta["corpus"]["bars"]["bars"] > 20

    gen = BarGenerator.load(str(model))
    assert gen.conditional == (variant == "cgan") and gen.steps_per_bar == 16
    bars = gen.bars(5, 1.0, np.random.default_rng(0))
    assert len(bars) == 5 and all(len(b) == 16 and "/" not in b for b in bars)
    out = tmp / f"{variant}.mid"
    assert main(["generate", "--model", str(model), "--bars", "4", "--random-seed", "1", "--out", str(out)]) == 0
    from jamd.midifile import read_midi_notes

    notes, _ = read_midi_notes(out)
    assert notes and max(n.end for n in notes) <= 16 + 4 * 16


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
