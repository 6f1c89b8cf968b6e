"""Exact half-widths for sums of discrete Laplace noise, checked against OpenDP and brute force."""

from __future__ import annotations

import math

import numpy as np
import opendp.prelude as dp
import pytest

from disclosure.dp_accuracy import half_width, tail


def _pmf(scale: float, support: int) -> np.ndarray:
    q = math.exp(-1.0 / scale)
    x = np.arange(-support, support + 1)
    return (1 - q) / (1 + q) * q ** np.abs(x)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5, 16.0, 120.0])
def test_single_draw_matches_closed_form_and_opendp(scale: float) -> None:
    q = math.exp(-1.0 / scale)
    for t in (0, 1, 4, 17, 60):
        assert tail(1, scale, t) == pytest.approx(2 * q ** (t + 1) / (1 + q), rel=1e-9, abs=1e-16)
    for alpha in (0.05, 0.025, 0.01):
        t = half_width(1, scale, alpha)
        opendp = dp.discrete_laplacian_scale_to_accuracy(scale, alpha)
        # OpenDP's accuracy a has P(|X| >= a) = alpha, so floor(a) is a valid integer half-width;
        # ours is the smallest one, hence never larger and never more than one less.
        assert t <= math.floor(opendp) <= t + 1
        assert tail(1, scale, t) <= alpha < tail(1, scale, t - 1)


@pytest.mark.parametrize(("m", "scale"), [(2, 1.0), (3, 0.7), (5, 2.0), (12, 1.5)])
def test_sum_matches_brute_force_convolution(m: int, scale: float) -> None:
    support = int(60 * scale) + 20
    one = _pmf(scale, support)
    total = one
    for _ in range(m - 1):
        total = np.convolve(total, one)
    centre = (len(total) - 1) // 2
    for t in (0, 1, 3, 8, 20):
        brute = float(total[: centre - t].sum() + total[centre + t + 1 :].sum())
        assert tail(m, scale, t) == pytest.approx(brute, rel=1e-7, abs=1e-15)
    t = half_width(m, scale, 0.05)
    assert tail(m, scale, t) <= 0.05 < tail(m, scale, t - 1)


def test_half_width_covers_simulated_sums() -> None:
    # Discrete Laplace as the difference of two geometric variables (numpy counts trials, the
    # offsets cancel). 40,000 draws: the empirical miss rate has a standard deviation near 0.001.
    rng = np.random.default_rng(11)
    for m, scale in ((1, 1.0), (7, 1.0), (30, 3.0)):
        p = -math.expm1(-1.0 / scale)
        draws = (rng.geometric(p, (40_000, m)) - rng.geometric(p, (40_000, m))).sum(axis=1)
        t = half_width(m, scale, 0.05)
        miss = float(np.mean(np.abs(draws) > t))
        assert miss <= 0.05 + 0.006
        assert miss == pytest.approx(tail(m, scale, t), abs=0.006)
        # The next smaller half-width would miss too often: t is tight, not merely safe.
        assert float(np.mean(np.abs(draws) > t - 1)) > 0.05 - 0.006


def test_without_noise_the_half_width_is_zero() -> None:
    assert half_width(1, 0.0, 0.05) == 0
    assert half_width(50, 1e-9, 0.05) == 0
    assert tail(3, 0.0, 0) == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        tail(0, 1.0, 1)
    with pytest.raises(ValueError):
        tail(1, -1.0, 1)
    with pytest.raises(ValueError):
        tail(1, math.inf, 1)
    with pytest.raises(ValueError):
        half_width(1, 1.0, 0.0)
    with pytest.raises(ValueError):
        half_width(1, 1.0, 1.0)
    assert tail(2, 1.0, -1) == 1.0
