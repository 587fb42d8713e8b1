"""Where the corpus comes from: a folder, or a collection inside music21's corpus.

`corpus.source` is resolved in this order:

1. an existing folder (or single file) on disk: every ``.krn``, ``.abc``,
   ``.mid``/``.midi``, ``.musicxml``/``.mxl``/``.xml`` file below it;
2. a short alias: ``erk`` (the seed's Erk subset of Essen, 1,781 tunes),
   ``essen`` (all of ``essenFolksong``), ``oneill`` (O'Neill's Music of
   Ireland, 1850: ``oneills1850``), ``ryan`` (Ryan's Mammoth Collection:
   ``ryansMammoth``), or ``folk`` (essen + oneill + ryan, ~11,500 tunes);
3. a path inside music21's bundled corpus: a folder (``bach``,
   ``essenFolksong``) or a file-name prefix (``essenFolksong/han`` matches
   ``han1.abc`` and ``han2.abc``).

Nothing is ever downloaded: only files already on disk are read.

`corpus.source` may also be a list of any of these (YAML list): the corpus
is their union, a file listed by two of them is read once, and every unit
carries the label of the source it came from, so the report gives each
source's share.

An ABC file holds many tunes (an Opus); it is cut into one work unit per
``X:`` tune here, so the parallel parser spreads one big file over all cores
and one broken tune does not lose the rest of its file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from jamd.errors import DataError

MIDI_SUFFIXES = (".mid", ".midi")  # read by jamd's own MIDI reader, not music21's
SUFFIXES = (".krn", ".abc", ".mid", ".midi", ".musicxml", ".mxl", ".xml")
ALIASES = {"erk": "essenFolksong/erk", "essen": "essenFolksong", "oneill": "oneills1850",
           "ryan": "ryansMammoth"}
GROUPS = {"folk": ("essen", "oneill", "ryan")}  # an alias for several sources
_TUNE_START = re.compile(r"(?m)^(?=X:)")
_TUNE_NUMBER = re.compile(r"X:\s*(\S+)")


@dataclass(frozen=True)
class Unit:
    """One piece of parsing work: a whole file, or one ABC tune's text."""

    name: str  # stable tune name, e.g. "essenFolksong/erk5.abc#3"; the split hashes it
    path: str
    text: str | None = None  # ABC text of one tune; None: parse the file at `path`
    origin: str = ""  # label of the source it came from (a multi-source corpus reports shares)


@dataclass(frozen=True)
class Source:
    label: str  # what the user wrote in corpus.source
    root: Path  # tune names are relative to this
    files: tuple[Path, ...]
    description: str
    # several sources: (label, root, files) of each; empty for one source
    parts: tuple[tuple[str, Path, tuple[Path, ...]], ...] = ()

    def groups(self) -> tuple[tuple[str, Path, tuple[Path, ...]], ...]:
        """(label, root, files) of each source in it (one for a single source)."""
        return self.parts or ((self.label, self.root, self.files),)

    def file_origins(self) -> Iterator[tuple[Path, Path, str]]:
        """(file, its root, its source's label) of every file, each file once."""
        seen: set[Path] = set()
        for label, root, files in self.groups():
            for f in files:
                if f not in seen:
                    seen.add(f)
                    yield f, root, label

    def fingerprint(self, *extra: object) -> str:
        """Hash of the file list (paths, sizes, mtimes) and `extra` (part, version...)."""
        entries = []
        for f in self.files:
            try:
                st = f.stat()
            except OSError:  # a dangling link: listed, and unreadable to the parser
                entries.append([str(f), -1, -1])
                continue
            entries.append([str(f), st.st_size, st.st_mtime_ns])
        blob = json.dumps([entries, [str(x) for x in extra]]).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def units(self) -> list[Unit]:
        out: list[Unit] = []
        for f, root, label in self.file_origins():
            out.extend(file_units(f, root, label))
        return out


def file_rel(f: Path, root: Path) -> str:
    """The name of file `f` in a corpus rooted at `root`: its path below `root` (posix), else its name."""
    return f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name


def rebase_name(name: str, f: Path, root: Path) -> str:
    """A tune name of file `f` recorded under another root, renamed for `root`.

    The store keys files by absolute path, but a tune name starts with the file's path below the
    root of the run that parsed it ("sub/a.mid", "sub/b.abc#3" parsed from the parent folder):
    that prefix, the longest tail of `f`'s path that `name` starts with, is swapped for the path
    below `root`, so names never depend on which folder first parsed a file.
    """
    parts = f.parts
    for k in range(len(parts)):
        old = "/".join(parts[k:]).lstrip("/")
        if name == old or name.startswith(old + "#"):
            return file_rel(f, root) + name[len(old):]
    return name


def file_units(f: Path, root: Path, origin: str = "") -> list[Unit]:
    """The work units of one file: one per ABC tune, else the whole file."""
    rel = file_rel(f, root)
    if f.suffix.lower() == ".abc":
        return [Unit(u.name, u.path, u.text, origin) for u in _abc_units(f, rel)]
    return [Unit(rel, str(f), None, origin)]


def _listed(p: Path) -> bool:
    """A file the corpus holds: a regular file, or a link to none (a dangling link is listed, so the
    report counts it as unreadable instead of dropping it silently)."""
    return p.is_file() or (p.is_symlink() and not p.exists())


def _scan(folder: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and _listed(p))


def midi_files(folder: Path) -> list[Path]:
    """The MIDI files below `folder` as a folder source lists them (dangling links included)."""
    return _scan(folder, MIDI_SUFFIXES)


def music21_corpus_root() -> Path:
    # Found without importing music21 (half a second), so a cached corpus loads fast.
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("music21 is not installed: pip install music21")
    return Path(list(spec.submodule_search_locations)[0]) / "corpus"


def resolve(source: str | Sequence[str]) -> Source:
    """Turn `corpus.source` (one name or path, or a list of them) into a list of files;
    DataError (one line) if a source has none."""
    names = [source] if isinstance(source, str) else list(source)
    expanded: list[str] = []
    for name in names:
        for part in GROUPS.get(name, (name,)):
            if part not in expanded:
                expanded.append(part)
    if len(expanded) == 1:
        return _resolve_one(expanded[0], label=names[0] if len(names) == 1 else expanded[0])
    sources = [_resolve_one(name) for name in expanded]
    parts = tuple((s.label, s.root, s.files) for s in sources)
    files = tuple(dict.fromkeys(f for s in sources for f in s.files))
    label = "+".join(names)
    description = ", ".join(s.description for s in sources)
    return Source(label, sources[0].root, files, description, parts)


def _resolve_one(source: str, label: str | None = None) -> Source:
    label = source if label is None else label
    kinds = ", ".join(SUFFIXES)
    local = Path(source).expanduser()
    # files are keyed in the store by path: the resolved absolute one, so "." and its full path share it
    if local.is_dir():
        where = local.resolve()
        files = _scan(where)
        if not files:
            raise DataError(f"{local}: no {kinds} files in this folder")
        return Source(label, where, tuple(files), f"folder {local} ({len(files)} files)")
    if local.is_file():
        if local.suffix.lower() not in SUFFIXES:
            raise DataError(f"{local}: not a corpus file (use one of {kinds})")
        where = local.parent.resolve() / local.name  # a linked file keeps its own name
        return Source(label, where.parent, (where,), f"file {local}")

    if local.is_absolute() or source.startswith((".", "~")):
        raise DataError(f"{local}: no such folder or file (corpus.source)")
    root = music21_corpus_root()
    inside = ALIASES.get(source, source).strip("/")
    target = root / inside
    if target.is_dir():
        files = _scan(target)
    else:
        # a file-name prefix inside the corpus, e.g. essenFolksong/erk -> erk5.abc, erk10.abc...
        parent, prefix = target.parent, target.name
        files = sorted(p for p in parent.glob(prefix + "*") if p.suffix.lower() in SUFFIXES) \
            if parent.is_dir() and parent.is_relative_to(root) else []
    if not files:
        raise DataError(
            f"corpus.source {source!r}: no such folder, and no {kinds} files under "
            f"{inside!r} in music21's corpus (try erk, folk, bach, essenFolksong/han or a folder path)"
        )
    return Source(label, root, tuple(files), f"music21 corpus {inside}* ({len(files)} files)")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older ABC collections are Latin-1


def _abc_units(path: Path, rel: str) -> list[Unit]:
    """One unit per `X:` tune; the file header (before the first X:) goes with each."""
    try:
        text = _read_text(path)
    except OSError:
        return [Unit(rel, str(path))]  # let the parser report the file as unreadable
    chunks = _TUNE_START.split(text)
    header, tunes = (chunks[0], chunks[1:]) if not chunks[0].startswith("X:") else ("", chunks)
    if not tunes:
        return [Unit(rel, str(path))]
    header = header if header.strip() else ""
    units, seen = [], set()
    for ordinal, tune in enumerate(tunes, start=1):
        m = _TUNE_NUMBER.match(tune)
        number = m.group(1) if m else str(ordinal)
        name = f"{rel}#{number}"
        if name in seen:  # duplicate X: numbers happen; the ordinal keeps names unique
            name = f"{rel}#{number}.{ordinal}"
        seen.add(name)
        units.append(Unit(name, str(path), header + tune))
    return units
