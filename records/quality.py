"""The data-quality report of an accepted submission: counts only, from the partner's own data.

Two halves. :class:`Collector` runs in the ingest's reader thread on each typed part as it
passes (see :mod:`records.ingest`): it adds up, per field, the values present (the typed frame
holds null for a missing value, so that is the column's null count, kept by Arrow and free to
read), and the rows per period and per geography (one ``value_counts`` over a low-cardinality
column). Nothing is read twice and the state is a few small dictionaries.

:func:`compare` runs in :func:`records.service.store`, inside the transaction that stores the
submission, and adds the warnings that need the partner's earlier submissions of the same
dataset and period: they come from the stored reports of those submissions (``rows-dropped``),
their ids (``period-overlap``) and their pseudonymized keys (``duplicate-keys``), never from a
value of theirs in the clear. ``late`` needs the agreement's ``submission_schedule``.

Warnings never block a submission. Errors block as before, in :mod:`records.validate`: a value
outside a field's declared range, code list, pattern or length is an error there, so an accepted
submission has none and the report does not count them (the rejection's report does, per code).

A report holds counts, fractions, field names, the values of the period field and of the
geography dimension (the partner's own categories, not values of people) and submission ids.
It never holds a value of any other field or an identifier of a person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import polars as pl

from policy.model import DatasetTerms
from policy.vocabulary import FieldRole

# A drop of at least this fraction of a count against the previous submission warns.
DROP_WARNING = 0.4
# Groups (periods, geographies) listed in a report; the rest are added up under "other" so that a
# dimension with thousands of values cannot make a receipt unbounded.
MAX_GROUPS = 500

MESSAGES = {
    "rows-dropped": (
        "Fewer rows than the previous accepted submission for this period: a drop of 40% or "
        "more. Check that the extract is complete."
    ),
    "geography-rows-dropped": (
        "Fewer rows for one geography than the previous accepted submission for this period: "
        "a drop of 40% or more. Check that the extract is complete."
    ),
    "duplicate-keys": (
        "Records of this submission have the same key as records of an earlier accepted "
        "submission for the same period; both are in use. Send 'replaces' to replace the "
        "earlier one."
    ),
    "period-overlap": (
        "An earlier accepted submission already covers this period and this one does not "
        "replace it: both are in use. Send 'replaces' to replace the earlier one."
    ),
    "late": "The submission arrived after the date the agreement's submission schedule sets.",
}


def _round(x: float) -> float:
    return round(x, 4)


class Collector:
    """Counts of the typed parts of one submission, added as they pass (one thread)."""

    def __init__(self, dataset: DatasetTerms, *, period: str | None = None) -> None:
        self.dataset = dataset
        # The declared period: validation has made every record's period field this or blank.
        self._declared = period
        self.rows = 0
        self._missing: dict[str, int] = {f.name: 0 for f in dataset.fields}
        spec = dataset.field(dataset.period_field) if dataset.period_field else None
        # The period field's values are shown unless they identify people.
        self._period = spec.name if spec is not None and spec.role != FieldRole.IDENTIFIER else None
        self._geographies = [
            f.name
            for f in dataset.fields
            if f.geography is not None and f.role == FieldRole.DIMENSION
        ]
        self._periods: Counter[str] = Counter()
        self._by_geography: dict[str, Counter[str]] = {g: Counter() for g in self._geographies}

    def add(self, typed: pl.DataFrame) -> None:
        """Count one typed part (as :meth:`records.validate.Validator.check` returns it)."""
        self.rows += typed.height
        for name, nulls in typed.null_count().row(0, named=True).items():
            if name in self._missing:
                self._missing[name] += int(nulls)
        if self._period is not None and self._declared is not None:
            self._periods[self._declared] += (
                typed.height - typed.get_column(self._period).null_count()
            )
        elif self._period is not None:
            _count(self._periods, typed, self._period)
        for name in self._geographies:
            _count(self._by_geography[name], typed, name)

    def report(self) -> dict[str, Any]:
        """The report as far as this submission alone tells it (no warnings yet)."""
        self._periods = Counter({k: n for k, n in self._periods.items() if n})
        fields = {}
        for f in self.dataset.fields:
            missing = self._missing[f.name]
            present = self.rows - missing
            fields[f.name] = {
                "present": present,
                "missing": missing,
                "completeness": _round(present / self.rows) if self.rows else 0.0,
            }
        return {
            "rows": self.rows,
            "fields": fields,
            "periods": _groups(self._period, self._periods),
            "geographies": {
                name: _groups(name, self._by_geography[name]) for name in self._geographies
            },
            "warnings": [],
        }


def _count(counter: Counter[str], typed: pl.DataFrame, name: str) -> None:
    # A lazy group-by: measured faster than Series.value_counts on a million short strings.
    counts = typed.lazy().select(name).drop_nulls().group_by(name).len().collect()
    for value, n in counts.iter_rows():
        counter[str(value)] += int(n)


def _groups(name: str | None, counter: Counter[str]) -> dict[str, Any] | None:
    if name is None:
        return None
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    shown = dict(sorted(ranked[:MAX_GROUPS]))
    other = sum(n for _, n in ranked[MAX_GROUPS:])
    return {"field": name, "rows": shown, **({"other_rows": other} if other else {})}


@dataclass(frozen=True)
class Earlier:
    """What :func:`compare` needs of the partner's earlier submissions of the same period."""

    # The most recent earlier submission that was accepted (in use or since replaced) and its
    # stored report; None if there is none (or it predates reports).
    previous_id: str | None = None
    previous_report: dict[str, Any] | None = None
    # Accepted submissions still in use, other than the one being replaced.
    in_use: Sequence[str] = ()
    replaces: str | None = None
    # Rows of this submission whose key is also a key of one in ``in_use``.
    duplicate_keys: int = 0
    # The schedule's due date for the period, if it has one.
    due: date | None = None
    received_at: datetime | None = None


def warning(code: str, **numbers: Any) -> dict[str, Any]:
    """A warning: its stable code, a message without values, and its numbers."""
    return {"code": code, "message": MESSAGES[code], **numbers}


def compare(report: dict[str, Any], earlier: Earlier) -> dict[str, Any]:
    """``report`` with the warnings that need the earlier submissions (see the module docstring)."""
    warnings: list[dict[str, Any]] = []
    if earlier.in_use and earlier.replaces is None:
        warnings.append(warning("period-overlap", submissions=sorted(earlier.in_use)))
    if earlier.duplicate_keys:
        warnings.append(
            warning(
                "duplicate-keys", count=earlier.duplicate_keys, submissions=sorted(earlier.in_use)
            )
        )
    previous = earlier.previous_report
    if previous is not None:
        drop = _drop(int(previous.get("rows", 0)), int(report["rows"]))
        if drop is not None:
            warnings.append(warning("rows-dropped", submission=earlier.previous_id, **drop))
        for name, groups in (report.get("geographies") or {}).items():
            before = ((previous.get("geographies") or {}).get(name) or {}).get("rows") or {}
            now = groups["rows"] if groups else {}
            for geography, count in sorted(before.items()):
                drop = _drop(int(count), int(now.get(geography, 0)))
                if drop is not None:
                    warnings.append(
                        warning(
                            "geography-rows-dropped",
                            submission=earlier.previous_id,
                            field=name,
                            geography=geography,
                            **drop,
                        )
                    )
    if earlier.due is not None and earlier.received_at is not None:
        days = (earlier.received_at.date() - earlier.due).days
        if days > 0:
            warnings.append(warning("late", days_late=days, due=earlier.due.isoformat()))
    return {**report, "warnings": warnings}


def summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the other parties of the agreement are told of a submission's report: the rows and
    which warnings it raised, once each. Never the counts per period or per geography, nor a
    warning's numbers: those are counts about people that no disclosure rule has passed, meant for
    the submitting organization alone (its receipt, its webhook, its console page)."""
    if report is None:
        return None
    codes = sorted({str(w["code"]) for w in report.get("warnings", ())})
    return {
        "rows": report["rows"],
        "warnings": [{"code": c, "message": MESSAGES[c]} for c in codes],
    }


def _drop(before: int, now: int) -> dict[str, Any] | None:
    """The numbers of a drop of at least :data:`DROP_WARNING` from ``before`` to ``now``."""
    if before <= 0 or now >= before:
        return None
    fraction = (before - now) / before
    if fraction < DROP_WARNING:
        return None
    return {"previous_rows": before, "rows": now, "drop": _round(fraction)}


def duplicate_count(
    new_hashes: pl.Series | None, earlier_keys: pl.DataFrame | None, key: Sequence[str]
) -> int:
    """Rows whose key hash (see :meth:`records.validate.Validator.remember_keys`) is also the
    hash of a key of ``earlier_keys``: the pseudonymized key columns of earlier submissions.
    64-bit hashes of tokens: the chance of a false match in a million by a million rows is
    about 1 in 20 million, which a warning can bear."""
    if new_hashes is None or earlier_keys is None or not earlier_keys.height:
        return 0
    if any(name not in earlier_keys.columns for name in key):
        return 0
    old = earlier_keys.select(pl.struct(list(key)).hash().alias("h")).unique()
    return new_hashes.alias("h").to_frame().join(old, on="h", how="semi").height
