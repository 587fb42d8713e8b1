"""`jamd eval` end to end on tiny sets, and its one-line errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

import mido
import pytest

from jamd.cli import main
from jamd.midi.midifile import write_midi
from jamd.tokens import Note, Vocabulary
from jamd.training.evaluation import models, pipeline, plots
from jamd.training.evaluation.markov import MarkovChain

TUNES = [
    "60 _ 62 _ 64 _ _ _ 65 _ 67 _ _ _ r _ 67 _ 65 _ 64 _ 62 _ 60 _ _ _ _ _ _ _",
    "67 _ _ 65 64 _ 62 _ 60 _ _ _ 62 _ 64 _ 65 _ 67 _ 69 _ _ _ 67 _ _ _ r _ _ _",
    "64 _ 64 _ 65 _ 67 _ 67 _ 65 _ 64 _ 62 _ 60 _ 60 _ 62 _ 64 _ 64 _ _ 62 62 _ _ _",
    "72 _ 71 _ 69 _ 67 _ 65 _ 64 _ 62 _ 60 _ 62 _ 64 _ 60 _ _ _ 59 _ _ _ 60 _ _ _",
    "60 _ 60 _ 67 _ 67 _ 69 _ 69 _ 67 _ _ _ 65 _ 65 _ 64 _ 64 _ 62 _ 62 _ 60 _ _ _",
    "69 _ _ _ 72 _ 71 _ 69 _ 67 _ 69 _ _ _ 64 _ 65 _ 67 _ 65 _ 64 _ 62 _ 64 _ _ _",
    "62 _ 64 _ 65 _ 62 _ 64 _ _ _ 60 _ _ _ 67 _ 65 _ 64 _ 62 _ 60 _ _ _ r _ _ _",
    "65 _ 64 _ 62 _ 60 _ 59 _ 60 _ 62 _ _ _ 64 _ 65 _ 67 _ 72 _ 71 _ 72 _ _ _ _ _",
]


@dataclass
class FakeTune:
    name: str
    symbols: list[str]


class FakeCorpus:
    """The three things eval uses of `EncodedCorpus`: vocab, tunes, split."""

    def __init__(self):
        self.tunes = [FakeTune(f"t{i}", t.split()) for i, t in enumerate(TUNES)]
        self.vocab = Vocabulary.from_pitches(range(55, 80))

    def split(self, validation_fraction=None, seed=None):
        return list(range(4)), list(range(4, 8))


@pytest.fixture
def fake_corpus(monkeypatch):
    corpus = FakeCorpus()
    monkeypatch.setattr(pipeline, "load_corpus", lambda cfg, progress: corpus)
    return corpus


def skip_plots(monkeypatch):
    """Skip matplotlib where a test checks figures, not pictures (drawing is most of a run)."""
    for name in ("transition_heatmaps", "kde_plots", "piano_roll"):
        monkeypatch.setattr(plots, name, lambda *args: args[-1])


@pytest.fixture
def no_plots(monkeypatch):
    skip_plots(monkeypatch)


@pytest.fixture
def fake_model(monkeypatch, fake_corpus):
    """A "model" that is an order-2 chain: the LSTM's step interface without ONNX."""
    chain = MarkovChain(fake_corpus.vocab, 2).fit(t.symbols for t in fake_corpus.tunes[:4])
    monkeypatch.setattr(models, "load_source", lambda name, cfg: models.StepSource(name, chain))


def run_cli(capsys, *argv):
    code = main(["eval", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line(err: str, *fragments: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jamd: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def midi_folder(path, n=3):
    path.mkdir()
    for i, t in enumerate(TUNES[:n]):
        notes = [Note(k, 60 + (k // 2) % 7, 2) for k in range(0, 16 + 2 * i, 2)] if t else []
        write_midi(notes, path / f"m{i}.mid")
    return path


def test_empty_folder_is_one_line(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "--generated", str(empty), "--reference", str(midi_folder(tmp_path / "r")),
                           "--no-baseline", "--out", str(tmp_path / "out"))
    assert code == 4
    assert_one_line(err, str(empty), "no MIDI files")


def test_midi_file_without_notes_is_one_line(capsys, tmp_path):
    ref = midi_folder(tmp_path / "r")
    silent = ref / "silent.mid"
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("end_of_track", time=0)]))
    mid.save(str(silent))
    code, _, err = run_cli(capsys, "--generated", str(midi_folder(tmp_path / "g")), "--reference", str(ref),
                           "--no-baseline", "--out", str(tmp_path / "out"))
    assert code == 4
    assert_one_line(err, str(silent), "no notes")


def test_n_larger_than_the_corpus_is_one_line(capsys, tmp_path, fake_model):
    code, _, err = run_cli(capsys, "--model", "fake", "--reference", "erk", "--n", "50",
                           "--out", str(tmp_path / "out"))
    assert code == 4
    assert_one_line(err, "--n 50", "erk has 8 tunes")


def test_n_larger_than_a_folder_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--generated", str(midi_folder(tmp_path / "g")), "--reference",
                           str(midi_folder(tmp_path / "r")), "--n", "9", "--no-baseline",
                           "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "--n 9", "3 MIDI files")


def test_n_below_two_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--n", "1", "--out", str(tmp_path / "out"))
    assert code == 2
    assert_one_line(err, "--n must be at least 2")


def test_full_run_writes_a_reproducible_report(capsys, tmp_path, fake_model, monkeypatch):
    args = ["--model", "fake", "--reference", "erk", "--n", "4", "--bars", "2", "--markov-order", "2",
            "--random-seed", "7"]
    made = []
    real_figure = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda *a: made.append(real_figure(*a)) or made[-1])
    code, out, err = run_cli(capsys, *args, "--set", "eval.piano_roll=2", "--out", str(tmp_path / "a"))
    assert code == 0, err
    kde_axes = [ax for f in made if f._suptitle is not None and "KDE" in f._suptitle.get_text()
                for ax in f.axes if ax.get_visible()]
    assert len(kde_axes) >= 4 and all(ax.get_xlabel() and ax.get_ylabel() for ax in kde_axes)
    assert "report:" in out
    a = tmp_path / "a"
    for name in ("report.md", "figures.json", "pitch_class_transition_matrix.png",
                 "note_length_transition_matrix.png", "kde_fake.png", "kde_markov-2.png",
                 "piano_roll_reference.png", "piano_roll_fake.png"):
        assert (a / name).is_file(), name
    fig = json.loads((a / "figures.json").read_text())
    assert set(fig["sets"]) == {"fake", "markov-2", "corpus"}  # corpus: real tunes, the ceiling
    assert fig["baseline"] == "markov-2"
    fake = fig["sets"]["fake"]
    assert fake["nll"]["tunes"] == 4 and fake["nll"]["per_token"] > 0
    assert set(fake["quality_bars"]) == {"nll_below_baseline", "overlap_area_at_least_0.7",
                                         "pitch_std_within_25pct"}
    assert fig["settings"]["command"].startswith("jamd eval --model fake --reference erk --n 4")
    report = (a / "report.md").read_text()
    assert "![kde_fake](kde_fake.png)" in report and "Quality bars" in report
    assert "**N = 4** melodies per set." in report and "- **fake** (N = 4)" in report
    assert fig["settings"]["n"] == fig["settings"]["n_requested"] == 4

    skip_plots(monkeypatch)  # the second run only has to give the same figures
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "b"))
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "figures.json").read_text())
    again["settings"]["command"] = fig["settings"]["command"]  # only --out differs
    assert again == fig


def test_two_folders_without_corpus(capsys, tmp_path, no_plots, monkeypatch):
    import sys

    seen = []
    real_run = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: seen.append(k["progress"]) or real_run(*a, **k))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run_cli(capsys, "--generated", str(midi_folder(tmp_path / "g")), "--reference",
                             str(midi_folder(tmp_path / "r")), "--no-baseline", "--random-seed", "1",
                             "--no-progress", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert seen == [False]  # --no-progress: no bars even on a terminal
    fig = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert fig["sets"]["generated"]["nll"] is None
    assert fig["reference"]["n"] == 3
    # every file of both folders: N is what was used, nothing was requested
    assert fig["settings"]["n_requested"] is None
    assert "**N = 3** melodies per set." in (tmp_path / "out" / "report.md").read_text()


def test_unknown_model_fails_before_the_corpus_is_read(capsys, tmp_path, monkeypatch):
    def no_corpus(cfg, progress):
        raise AssertionError("the corpus was loaded before the model was checked")

    monkeypatch.setattr(pipeline, "load_corpus", no_corpus)
    code, _, err = run_cli(capsys, "--model", "banjo", "--out", str(tmp_path / "out"))
    assert code == 3
    assert_one_line(err, "'banjo'")
