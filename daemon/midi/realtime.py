"""Real-time priority for jamd's time-critical threads (Linux SCHED_FIFO).

The MIDI input reader, the sender (`sync.scheduler`) and the engine thread
each ask for it; it lives in the lowest layer that starts a thread of its own.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def ask_realtime(priority: int, who: str) -> bool:
    """Ask SCHED_FIFO at `priority` for the calling thread (Linux); False if refused.

    A sleeping thread at normal priority can be woken several ms late on a
    busy machine; a SCHED_FIFO one (as JACK's own threads are) is not.  The
    engine thread asks too, one step lower: a thread that holds the GIL and
    is preempted by some other process would otherwise keep the sender
    waiting for the GIL however high the sender's own priority.
    """
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
    except (OSError, AttributeError) as exc:
        log.debug("%s thread runs at normal priority (SCHED_FIFO refused: %s)", who, exc)
        return False
    return True
