"""The categories an agreement declares for a dataset: the attributes its records can be
counted by, and each record's category along them.

These are the dimension fields with declared values (``constraints.enum``), boolean dimension
fields, and the derived fields an agreement declares once (``datasets[].derived``): a flag such
as "chronically absent" or a band such as "score 80 and over", computed with the filter
language of :mod:`agreements.expressions`. A structural zero is a combination of them that
cannot occur: records in one are refused at ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from agreements.expressions import compile_filter
from policy.model import DatasetTerms, label_of
from policy.vocabulary import FieldRole, FieldType

TRUE, FALSE = "true", "false"


@dataclass(frozen=True)
class Attribute:
    """One attribute of the partition and its categories (labels, in declared order)."""

    name: str
    categories: tuple[str, ...]
    source: str  # "field", "derived" or "cohort"


def dataset_attributes(ds: DatasetTerms) -> dict[str, Attribute]:
    """The attributes a dataset declares (cohort memberships come from indicators)."""
    out: dict[str, Attribute] = {}
    for f in ds.fields:
        if f.role != FieldRole.DIMENSION:
            continue
        if f.type == FieldType.BOOLEAN:
            out[f.name] = Attribute(f.name, (TRUE, FALSE), "field")
        elif f.enum:
            out[f.name] = Attribute(f.name, tuple(label_of(v) for v in f.enum), "field")
    for d in ds.derived:
        out[d.name] = Attribute(d.name, d.labels, "derived")
    return out


def label(ds: DatasetTerms, name: str) -> pl.Expr:
    """The category label of every record along a declared attribute (a dimension field or a
    derived field), as text; null where the value is missing."""
    spec = ds.field(name)
    if spec is not None:
        column = pl.col(name)
        if spec.type == FieldType.BOOLEAN:
            return (pl.when(column).then(pl.lit(TRUE)).when(~column).then(pl.lit(FALSE))).otherwise(
                None
            )
        return column.cast(pl.String)
    derived = ds.derived_field(name)
    if derived is None:
        raise KeyError(name)
    fields = [(f.name, f.type, f.role) for f in ds.fields]
    if derived.when is not None:
        cond = compile_filter(derived.when, fields).expression
        return pl.when(cond).then(pl.lit(TRUE)).otherwise(pl.lit(FALSE))
    chain: Any = pl
    for value, when in derived.categories:
        chain = chain.when(compile_filter(when, fields).expression).then(pl.lit(value))
    out: pl.Expr = chain.otherwise(pl.lit(derived.otherwise)).cast(pl.String)
    return out


def codes(frame: pl.DataFrame, ds: DatasetTerms, attrs: Sequence[Attribute]) -> list[np.ndarray]:
    """Per attribute (fields and derived ones), the index in ``attr.categories`` of every
    record of ``frame`` (-1 where the value is missing or not among them)."""
    exprs: list[pl.Expr] = []
    for i, attr in enumerate(attrs):
        lookup = {text: j for j, text in enumerate(attr.categories)}
        expr = label(ds, attr.name).replace_strict(
            list(lookup), list(lookup.values()), default=-1, return_dtype=pl.Int64
        )
        exprs.append(expr.fill_null(-1).alias(f"__a{i}"))
    if not exprs:
        return []
    coded = frame.select(exprs)
    return [coded.get_column(f"__a{i}").to_numpy() for i in range(len(attrs))]


def structural_mask(frame: pl.DataFrame, ds: DatasetTerms) -> np.ndarray:
    """Which records of ``frame`` fall in a structural zero of the agreement (to be refused)."""
    bad = np.zeros(frame.height, dtype=bool)
    if not ds.structural_zeros or frame.height == 0:
        return bad
    attrs = dataset_attributes(ds)
    names = sorted({name for combo in ds.structural_zeros for name, _ in combo if name in attrs})
    known = [attrs[n] for n in names]
    columns = dict(zip(names, codes(frame, ds, known), strict=True))
    for combo in ds.structural_zeros:
        hit = np.ones(frame.height, dtype=bool)
        for name, label in combo:
            attr = attrs.get(name)
            if attr is None or label not in attr.categories:
                hit[:] = False  # lint refuses such a combination; it matches nothing
                break
            hit &= columns[name] == attr.categories.index(label)
        bad |= hit
    return bad
