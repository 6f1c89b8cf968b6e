"""Small helpers to make tables for the tests."""

from __future__ import annotations

import numpy as np

from disclosure.cube import Cube


def with_margins(inner: np.ndarray) -> np.ndarray:
    inner = np.asarray(inner, dtype=np.int64)
    out = np.zeros(tuple(s + 1 for s in inner.shape), dtype=np.int64)
    out[tuple(slice(0, s) for s in inner.shape)] = inner
    for axis, size in enumerate(out.shape):
        index = [slice(None)] * out.ndim
        index[axis] = size - 1
        out[tuple(index)] = np.take(out, np.arange(size - 1), axis=axis).sum(axis=axis)
    return out


def table(numerator, denominator=None, dims: tuple[str, ...] | None = None) -> Cube:
    num = np.asarray(numerator)
    dims = dims or tuple(f"d{i}" for i in range(num.ndim))
    cats = tuple(tuple(f"{d}{j}" for j in range(s)) for d, s in zip(dims, num.shape, strict=True))
    return Cube(
        dims,
        cats,
        with_margins(num),
        None if denominator is None else with_margins(np.asarray(denominator)),
    )


def random_table(rng: np.random.Generator, dims: int, rate: bool) -> Cube:
    shape = tuple(int(s) for s in rng.integers(2, 5 if dims <= 2 else 4, size=dims))
    if dims == 4:
        shape = tuple(min(s, 3) for s in shape)
    scale = rng.choice([8.0, 25.0, 80.0])
    den = rng.poisson(rng.lognormal(np.log(scale), 1.0, size=shape)).astype(np.int64)
    if not rate:
        return table(den)
    share = rng.beta(2, 2, size=shape)
    num = rng.binomial(den, share)
    return table(num, den)
