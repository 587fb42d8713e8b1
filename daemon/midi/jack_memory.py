"""Giving back libjack's lock on the JACK server's shared memory (`jamd run`, Linux)."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


# libjack (jack2) mlock()s each server segment a client attaches, the graph
# segment included, and mlock faults in every page of it: 107 MB with jackd's
# default 2048 ports (`-p`; 40 MB at -p 64), of which a MIDI client uses a few
# pages (its ports' buffers, the graph's state: about 0.5 MB).  The lock
# succeeds for root, CAP_IPC_LOCK or a memlock-unlimited user (Debian's `audio`
# group when JACK's real-time option is chosen), and fails quietly against a
# default user's 8 MB RLIMIT_MEMLOCK; no jackd option or environment variable
# turns it off.
JACK_SHM_PREFIX = "/dev/shm/jack-"
_MADV_DONTNEED = 4  # Linux


def _locked_jack_segments(smaps: str = "/proc/self/smaps") -> list[tuple[int, int]]:
    """(start, length) of each mapping of a JACK shared segment that is locked here."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    with open(smaps, encoding="utf-8", errors="replace") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                fields = line.split()
                current = None
                if len(fields) >= 6 and fields[5].startswith(JACK_SHM_PREFIX):
                    lo, hi = (int(x, 16) for x in first.split("-"))
                    current = (lo, hi - lo)
            elif current is not None and first == "VmFlags:" and "lo" in line.split()[1:]:
                found.append(current)  # "lo": VM_LOCKED, this mapping was mlock()ed
                current = None
    return found


def _jack_segments(maps: str = "/proc/self/maps") -> list[tuple[int, int]]:
    """(start, length) of each mapping of a JACK shared segment here, locked or not."""
    found = []
    with open(maps, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith(JACK_SHM_PREFIX):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                found.append((lo, hi - lo))
    return found


class JackPages:
    """Gives back, after each port listing, the pages of JACK's segments the listing mapped.

    `jack_get_ports` (rtmidi's `get_ports`) reads every entry of the server's
    port table, and each read fault maps 64 KB around it: 66 MB of RSS at
    jackd's default 2048 ports, back after `release_jack_shared_memory` gave
    them up, at the hotplug watcher's first look.  `release()` unmaps them again
    (MADV_DONTNEED: on a shared mapping only this process's page tables change).
    Cost on the 2-core dev box, 2048 ports: ~1.6 ms for the listing that maps
    them again plus ~2 ms for the madvise, per look, against ~0.02 ms for a
    listing with the pages left mapped: hence the hotplug watcher looks only
    when JACK says a port came or went (`jack_watch`), not every 0.5 s.
    Segments are found once, at the first call (after `release_jack_shared_memory`:
    MADV_DONTNEED refuses locked pages).  Linux only; a no-op elsewhere.
    """

    def __init__(self, maps: str = "/proc/self/maps"):
        self._maps = maps
        self._segments: list[tuple[int, int]] | None = None
        self._madvise = None

    def release(self) -> int:
        """Unmap every JACK segment's pages here; the bytes of the segments done."""
        if not sys.platform.startswith("linux"):
            return 0
        if self._segments is None:
            try:
                self._segments = _jack_segments(self._maps)
            except OSError:
                self._segments = []
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self._madvise = libc.madvise
        done = 0
        for start, length in self._segments:
            if self._madvise(start, length, _MADV_DONTNEED) == 0:
                done += length
        return done


def release_jack_shared_memory() -> int:
    """Give back this process's lock on the JACK server's shared segments and
    drop their pages from its page tables; returns the bytes released.

    Call it once every JACK client of the process is open.  The pages are the
    server's: jackd owns the segment and locks it itself, so nothing leaves
    RAM and no memory is freed system-wide; what changes is that jamd's RSS
    stops counting 100 MB that are not jamd's.  libjack's process thread then
    maps again the few pages it touches (one minor fault each, at its first
    cycles), as it always does where the lock fails.  Linux only; 0 elsewhere
    or when nothing is locked (the default user's case).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        segments = _locked_jack_segments()
    except OSError:
        return 0
    if not segments:
        return 0
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, length in segments:
        # MADV_DONTNEED refuses locked pages, hence munlock first; on a shared
        # mapping it only unmaps: the contents stay in the segment.
        if libc.munlock(start, length) != 0 or libc.madvise(start, length, _MADV_DONTNEED) != 0:
            log.debug("could not release a JACK segment at 0x%x: %s", start, os.strerror(ctypes.get_errno()))
            continue
        released += length
    if released:
        log.debug("released %.0f MB of the JACK server's shared memory from jamd's RSS", released / 2**20)
    return released
