"""Random sequences of indicator definitions and releases over random data, including new data
versions and withdrawn submissions, attacked jointly by an independent linear-programming
attacker: zero disclosures."""

from __future__ import annotations

import numpy as np
import pytest

from tests.disclosure.independent import disclosures
from tests.disclosure.scenarios import CATEGORIES, IMPOSSIBLE, History, people, random_shape

pytestmark = pytest.mark.slow

SCOPES = (["s0"], ["s0", "s1"], ["s0", "s1", "s2"], ["s1", "s2"])


@pytest.mark.parametrize("seed", range(10))
def test_random_histories_disclose_nothing(seed):
    rng = np.random.default_rng(1000 + seed)
    records = people(rng, int(rng.integers(50, 150)))
    history = History(records, k=int(rng.choice([3, 5])))
    for step in range(int(rng.integers(3, 6))):
        shape, unit = random_shape(rng)
        scope = SCOPES[min(step // 2, len(SCOPES) - 1)] if seed % 2 else SCOPES[2]
        history.release(shape, unit, scope)
    found = disclosures(records, CATEGORIES, ["s0", "s1", "s2"], history.shown, IMPOSSIBLE)
    assert found == []
