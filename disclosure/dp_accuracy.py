"""Exact confidence half-widths for sums of independent discrete Laplace noise.

A differentially private release adds discrete Laplace noise (OpenDP's "Integer Laplace",
P(X = x) proportional to exp(-|x| / scale)) once to every finest cell of the table; every margin
is then the sum of the m noisy finest cells below it, so its noise is the sum of m independent
discrete Laplace variables. OpenDP's accuracy utilities (``discrete_laplacian_scale_to_accuracy``)
cover a single draw only, which is why the sum is derived here, exactly rather than by a normal
approximation (which undercovers for the small m of the margins closest to the cells):

A discrete Laplace variable with scale b is the difference of two independent geometric variables
(failures before the first success, success probability p = 1 - exp(-1/b)), so a sum of m of them
is S = A - B with A, B independent negative binomial(m, p). Hence, for integers t >= 0,

    P(S > t) = sum over k of P(B = k) * P(A > t + k),     P(|S| > t) = 2 * P(S > t),

computed from scipy's negative binomial pmf on the bulk of the distribution (outside it the mass
is below 1e-17 on each side, so results are exact to about 1e-16, far below any significance
level used) with survival probabilities accumulated from the far tail, once per (m, scale); each
t then costs one dot product. For m = 1 this is the closed form 2 q^(t+1) / (1 + q),
q = exp(-1/b), and agrees with OpenDP (see the tests).

Noise is integer-valued, so a half-width is the smallest integer t with P(|S| > t) <= alpha: the
interval [noisy - t, noisy + t] then contains the true value with probability at least 1 - alpha.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.stats import nbinom

_CUT = 1e-17


def _success_probability(scale: float) -> float:
    if not math.isfinite(scale) or scale < 0:
        raise ValueError("scale must be finite and non-negative")
    if scale == 0:
        return 1.0
    # -expm1(-x) keeps precision when the scale is large and p is tiny.
    return -math.expm1(-1.0 / scale)


@lru_cache(maxsize=16)
def _bulk(m: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """pmf and survival function (P(A > x)) of negative binomial(m, p) on its bulk, from the
    first point where the lower tail passes 1e-17 to the point where the upper tail drops below."""
    bottom = max(int(nbinom.ppf(_CUT, m, p)) - 1, 0)
    top = int(nbinom.isf(_CUT, m, p)) + 1
    pmf = nbinom.pmf(np.arange(bottom, top + 1, dtype=np.float64), m, p)
    # P(A > x) summed from the far tail inwards keeps the small probabilities accurate.
    sf = np.concatenate([np.cumsum(pmf[::-1])[::-1][1:], [0.0]])
    return pmf, sf


def tail(m: int, scale: float, t: int) -> float:
    """P(|S| > t) for S the sum of ``m`` independent discrete Laplace(``scale``) variables."""
    if m < 1:
        raise ValueError("m must be at least 1")
    if t < 0:
        return 1.0
    p = _success_probability(scale)
    if p >= 1.0:
        return 0.0
    pmf, sf = _bulk(m, p)
    if t >= len(pmf):
        return 0.0
    # P(S > t) = sum_k P(B = k) P(A > t + k), both on the same grid offset by t.
    upper = float(np.dot(pmf[: len(pmf) - t], sf[t:]))
    return min(1.0, 2.0 * upper)


@lru_cache(maxsize=512)
def half_width(m: int, scale: float, alpha: float) -> int:
    """The smallest integer t >= 0 with P(|S| > t) <= ``alpha``, S as in :func:`tail`."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if tail(m, scale, 0) <= alpha:
        return 0
    lo, hi = 0, 1  # tail(lo) > alpha; find hi with tail(hi) <= alpha, then bisect
    while tail(m, scale, hi) > alpha:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tail(m, scale, mid) <= alpha:
            hi = mid
        else:
            lo = mid
    return hi
