"""How long a release request takes, as its requester sees it.

The time a suppressed release takes to compute depends on the data: how many cells are small,
how many linear programs the joint audit needs, how many earlier releases share its records.
A client that may request releases could read that as a side channel ("this population has
small cells"). So every release request, computed, returned from the store or refused, is
answered on a boundary of a fixed quantum of time (``BACKBONE_RELEASE_TIME_QUANTUM``): the
requester sees only how many whole quanta it took, which with a quantum above the usual
computing time is always one.
"""

from __future__ import annotations

import math


def padded_seconds(elapsed: float, quantum: float) -> float:
    """The time at which a request that has run ``elapsed`` seconds is answered: the next
    multiple of ``quantum`` (at least one quantum); ``elapsed`` itself when ``quantum`` is 0."""
    if quantum <= 0:
        return elapsed
    return max(1, math.ceil(elapsed / quantum - 1e-9)) * quantum
