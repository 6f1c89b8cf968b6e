"""The base partition of a dataset: the attributes a suppressed release may count by.

Every count a suppressed release publishes must be a sum of cells of one partition of the
dataset's records, so that everything published from the same records is one exact linear
system that the joint audit (:mod:`aggregation.population`) can check. The partition's
attributes are the agreement's declared categories, nothing a request makes up:

* dimension fields with declared values (``constraints.enum``) and boolean dimension fields;
* derived fields declared once in the agreement (``datasets[].derived``): a flag such as
  "chronically absent" or a band such as "score 80 and over", computed by the filter language;
* cohort memberships (a person also in another dataset, through the linkage tokens), one
  attribute per cohort an indicator names.

A suppressed indicator's filters are therefore conjunctions of ``attribute == value`` (a boolean
attribute alone, or with ``not``): a *slice* of the partition. Arbitrary conditions, exclusions
(``!=``, ``not in``) and thresholds on measures would each publish a new set of people whose
difference from a published one is a "tracker" (Denning's attack); they are accepted for
differentially private indicators only, where every release's privacy loss is charged.
"""

from __future__ import annotations

from collections.abc import Mapping

from agreements.categories import FALSE, TRUE, Attribute
from agreements.expressions import InvalidExpression, tokens
from core.errors import InvalidInput

COHORT_PREFIX = "cohort:"


class NotPartitionFilter(InvalidInput):
    kind = "filter-not-partition"
    title = "The filter is not a slice of the declared categories"


def cohort_attribute(dataset: str, slices: Mapping[str, str]) -> Attribute:
    """The attribute "counted in ``dataset`` (within ``slices`` of it)" of a person."""
    inner = ",".join(f"{k}={v}" for k, v in sorted(slices.items()))
    name = COHORT_PREFIX + dataset + (f"[{inner}]" if inner else "")
    return Attribute(name, (TRUE, FALSE), "cohort")


def parse_slices(text: str | None, attributes: Mapping[str, Attribute]) -> dict[str, str]:
    """The slice a filter selects: attribute -> category label.

    Accepted: ``a == "v"`` (or ``"v" == a``), a boolean attribute alone (``ready``), ``not a``,
    ``a == true``, parentheses, joined by ``and``. Anything else raises
    :class:`NotPartitionFilter` naming what is not allowed (never a value of the data).
    """
    if text is None or not text.strip():
        return {}
    try:
        toks = tokens(text)
    except InvalidExpression as exc:
        raise NotPartitionFilter(str(exc)) from None
    out: dict[str, str] = {}
    i = 0

    def fail(what: str) -> NotPartitionFilter:
        return NotPartitionFilter(
            f"{what} A suppressed indicator filters by the categories the agreement declares:"
            " conditions of the form attribute == value (a flag alone or with not), joined by"
            " and. Exclusions, alternatives and thresholds on measures are for differentially"
            " private indicators, or declare them once as a derived field of the agreement."
        )

    def attribute(name: str) -> Attribute:
        found = attributes.get(name)
        if found is None:
            raise fail(f"'{name}' is not a declared category of this dataset.")
        return found

    def literal(tok_kind: str, value: str) -> str:
        if tok_kind == "str":
            return bytes(value[1:-1], "utf-8").decode("unicode_escape")
        if tok_kind == "num" or (tok_kind == "kw" and value in (TRUE, FALSE)):
            return value
        raise fail("Expected a category after ==.")

    def put(attr: Attribute, label: str) -> None:
        if label not in attr.categories:
            raise fail(f"A value given for {attr.name} is not one of its declared categories.")
        if attr.name in out and out[attr.name] != label:
            raise fail(f"{attr.name} is given two different values.")
        out[attr.name] = label

    def condition() -> None:
        nonlocal i
        if i >= len(toks):
            raise fail("The filter ends too early.")
        tok = toks[i]
        if tok.kind == "op" and tok.value == "(":
            i += 1
            conjunction()
            if i >= len(toks) or toks[i].value != ")":
                raise fail("A parenthesis is not closed.")
            i += 1
            return
        if tok.kind == "kw" and tok.value == "not":
            i += 1
            if i >= len(toks) or toks[i].kind != "name":
                raise fail("'not' applies to a flag only.")
            attr = attribute(toks[i].value)
            if attr.categories != (TRUE, FALSE):
                raise fail(f"'not {attr.name}' needs a flag; {attr.name} has categories.")
            put(attr, FALSE)
            i += 1
            return
        if tok.kind == "name":
            attr = attribute(tok.value)
            i += 1
            if i < len(toks) and toks[i].kind == "op" and toks[i].value == "==":
                i += 1
                if i >= len(toks):
                    raise fail("Expected a category after ==.")
                put(attr, literal(toks[i].kind, toks[i].value))
                i += 1
                return
            if i < len(toks) and toks[i].value not in ("and", ")"):
                raise fail(f"Only == compares {attr.name} with a category.")
            if attr.categories != (TRUE, FALSE):
                raise fail(f"{attr.name} has categories: say which one with ==.")
            put(attr, TRUE)
            return
        if tok.kind in ("str", "num"):
            label = literal(tok.kind, tok.value)
            i += 1
            if i + 1 < len(toks) and toks[i].value == "==" and toks[i + 1].kind == "name":
                put(attribute(toks[i + 1].value), label)
                i += 2
                return
        raise fail("Only == conditions joined by and are allowed.")

    def conjunction() -> None:
        nonlocal i
        condition()
        while i < len(toks) and toks[i].kind == "kw" and toks[i].value == "and":
            i += 1
            condition()

    conjunction()
    if i != len(toks):
        raise fail("Only == conditions joined by and are allowed.")
    return out
