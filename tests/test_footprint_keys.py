"""Key detection without music21 (issue 15 section 5): the same keys as music21's `analyze('key')`.

`jamd.music.keys.detect_key` computes music21's key analysis itself, so `jamd run`
never imports music21.  These tests hold it to music21 itself, the reference: real
corpus tunes (whole and cut into 4-bar phrases, in all 12 transpositions), random
phrases (hypothesis), ties, and a fresh interpreter in which music21 cannot be
imported at all.
"""

from __future__ import annotations

import json

import pytest
from cli_checks import run_python
from hypothesis import given, settings
from hypothesis import strategies as st
from music21 import corpus, stream
from music21 import note as m21note

from jamd.music import keys
from jamd.tokens import Note


def music21_key(notes: list[Note]):
    """music21's own answer for a phrase, built as jamd's earlier detect_key built it."""
    s = stream.Stream()
    for n in sorted(notes):
        m = m21note.Note(n.pitch)
        m.quarterLength = max(n.duration, 1) / 4
        s.insert(n.start / 4, m)
    return s.analyze("key")


def assert_same_as_music21(notes: list[Note]) -> None:
    ref = music21_key(notes)
    assert keys.detect_key(notes) == keys.key_from_music21(ref), [(n.start, n.pitch, n.duration) for n in notes]
    hist = keys.pitch_class_histogram(notes)
    profile = keys.AARDEN_ESSEN_MAJOR if ref.mode == "major" else keys.AARDEN_ESSEN_MINOR
    # the same float, not merely a close one: the same sums in the same order
    assert keys.key_correlations(hist, profile)[ref.tonic.pitchClass] == ref.correlationCoefficient


def erk5_notes(n_tunes: int) -> list[list[Note]]:
    """The first `n_tunes` tunes of music21's essenFolksong/erk5.abc as jamd Notes (16ths)."""
    opus = corpus.parse("essenFolksong/erk5.abc")
    tunes = []
    for score in list(opus.scores)[:n_tunes]:
        tune = [Note(round(float(n.offset) * 4), n.pitch.midi, max(1, round(float(n.quarterLength) * 4)))
                for n in score.flatten().notes if isinstance(n, m21note.Note)]
        tunes.append(tune)
    return tunes


@pytest.fixture(scope="module")
def erk5() -> list[list[Note]]:
    return erk5_notes(12)


def test_corpus_tunes_and_their_phrases_get_music21s_key_in_every_transposition(erk5):
    checked = 0
    for tune in erk5:
        phrases = [tune] + [[n for n in tune if bar <= n.start < bar + 64] for bar in range(0, tune[-1].start, 64)]
        for shift in range(-5, 7):
            for phrase in phrases:
                if phrase:
                    assert_same_as_music21(keys.transpose_notes(phrase, shift))
                    checked += 1
    assert checked > 12 * 12 * 2  # whole tunes and their phrases, all 12 keys


def test_every_tonic_and_both_modes_occur_among_the_corpus_answers(erk5):
    # the parity above means something only if the answers are varied
    found = {keys.detect_key(keys.transpose_notes(t, s)) for t in erk5 for s in range(12)}
    assert {k.tonic for k in found} == set(range(12))
    assert {k.mode for k in found} == {"major", "minor"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255), st.integers(0, 32)), min_size=1, max_size=40))
def test_random_phrases_get_music21s_key(raw):
    assert_same_as_music21([Note(start, pitch, duration) for pitch, start, duration in raw])


@pytest.mark.parametrize("pitches", [
    list(range(60, 72)),  # all 12 pitch classes equally long: no variance, every correlation 0
    [60], [61, 61], [66, 73, 78],  # one pitch class; one chord
    [60, 66], [62, 68],  # a tritone: major and minor profiles tie in pairs
])
def test_ties_and_degenerate_phrases_break_as_music21_breaks_them(pitches):
    assert_same_as_music21([Note(4 * i, p, 4) for i, p in enumerate(pitches)])


def test_no_notes_is_c_major():
    assert keys.detect_key([]) == keys.Key(0, "major")


def test_a_key_is_detected_where_music21_cannot_be_imported(erk5):
    # What `jamd run` does now: music21 is never imported, not even late.
    phrases = [keys.transpose_notes(t, s)[:24] for t in erk5[:4] for s in (0, 3, 7)]
    expected = [keys.key_from_music21(music21_key(p)) for p in phrases]
    payload = json.dumps([[[n.start, n.pitch, n.duration] for n in p] for p in phrases])
    out = run_python(
        "import json, sys\n"
        "sys.modules['music21'] = None  # any import of it now fails\n"
        "from jamd.music.keys import detect_key\n"
        "from jamd.tokens import Note\n"
        f"phrases = json.loads({payload!r})\n"
        "print(json.dumps([[k.tonic, k.mode] for k in (detect_key([Note(*n) for n in p]) for p in phrases)]))\n"
        "print(any(m == 'music21' or m.startswith('music21.') for m in sys.modules if sys.modules[m]))\n")
    answers, imported = out.stdout.strip().splitlines()
    assert [keys.Key(t, m) for t, m in json.loads(answers)] == expected
    assert imported == "False"
