"""The garbage collector in a node's own process.

CPython's full collections walk every object the collector tracks. A node
holds some 170,000 of them once started (modules, classes, the machinery
of Twisted, Klein and the node) that live as long as the process. Under a
write load the leader then ran a full collection every half second or so,
each stalling the reactor up to 49 ms (13 in an 8 s run, 510 ms in all):
the write p99. :func:`settle` moves what exists once the node has started
out of the collector's sight (``gc.freeze``), so later full collections
walk only what was made since: about 7 ms each in the same run.

Only the entry points call this (``graft node run``, ``twist graft``): a
test process that starts many nodes must not make its garbage immortal.

May import the standard library only.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect what is garbage now, then freeze the survivors; returns how
    many objects the collector no longer walks."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
