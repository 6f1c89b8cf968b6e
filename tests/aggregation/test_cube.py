"""Distinct-person counting of a cube and its margins."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from disclosure.cube import TOTAL, build_cube

DIMS = ("hood", "year", "race")
CATS = (("a", "b", "c"), ("2021", "2022"), ("x", "y", "z", "w"))


def frame(rng: np.random.Generator, rows: int, people: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "token": [f"t{int(i)}".encode() for i in rng.integers(0, people, rows)],
            "hood": rng.choice(["a", "b", "c", "elsewhere"], rows).tolist(),
            "year": rng.choice([2021, 2022], rows).tolist(),
            "race": rng.choice(["x", "y", "z", "w", None], rows).tolist(),
        }
    )


def naive(df: pl.DataFrame, dims, cats) -> np.ndarray:
    df = df.with_columns(pl.col(d).cast(pl.String) for d in dims).drop_nulls()
    for d, c in zip(dims, cats, strict=True):
        df = df.filter(pl.col(d).is_in(list(c)))
    out = np.zeros(tuple(len(c) + 1 for c in cats), dtype=np.int64)
    for index in itertools.product(*(range(len(c) + 1) for c in cats)):
        sub = df
        for d, c, i in zip(dims, cats, index, strict=True):
            if i < len(c):
                sub = sub.filter(pl.col(d) == c[i])
        out[index] = sub.get_column("token").n_unique()
    return out


@pytest.mark.parametrize(("rows", "people"), [(400, 10_000), (400, 60), (0, 1)])
def test_every_margin_is_a_distinct_count(rows, people):
    rng = np.random.default_rng(rows + people)
    df = frame(rng, rows, people)
    cube = build_cube(df, df, "token", DIMS, CATS)
    expected = naive(df, DIMS, CATS)
    assert np.array_equal(cube.numerator, expected)
    assert np.array_equal(cube.denominator, expected)
    if people == 60 and rows:
        # People in several cells: the grand total is less than the sum of the cells.
        assert cube.numerator[-1, -1, -1] < cube.numerator[:-1, :-1, :-1].sum()


def test_no_dimensions_and_projection():
    rng = np.random.default_rng(1)
    df = frame(rng, 300, 80)
    whole = build_cube(df, None, "token", (), ())
    assert whole.shape == () and int(whole.numerator) == df.get_column("token").n_unique()
    cube = build_cube(df, None, "token", DIMS, CATS)
    sub = cube.project(("race", "hood"))
    direct = build_cube(df, None, "token", ("race", "hood"), (CATS[2], CATS[0]))
    assert sub.dimensions == ("race", "hood")
    assert np.array_equal(sub.numerator, direct.numerator)
    assert cube.index_of(("b", TOTAL, "y")) == (1, 2, 1)
    with pytest.raises(KeyError):
        cube.index_of(("b", TOTAL))
    with pytest.raises(ValueError):
        cube.project(("race", "race"))
    with pytest.raises(ValueError):
        build_cube(df, None, "token", DIMS, CATS[:2])


def test_records_without_a_token_are_not_people():
    df = pl.DataFrame({"token": [b"a", None, b"b"], "hood": ["a", "a", "b"]})
    cube = build_cube(df, None, "token", ("hood",), (("a", "b"),))
    assert cube.numerator.tolist() == [1, 1, 2]
