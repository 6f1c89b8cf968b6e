"""Benchmark: the joint audit of a new suppressed release against everything published before it.

Run: ``.venv/bin/python -m bench.bench_joint`` (``--quick`` for 100,000 records and 50 earlier
releases).

Two histories, each timed as the release alone (no earlier release) beside the same release
audited jointly with the whole history (``disclosure.joint.protect_in_population``, the pure
core the service runs after reading the records):

* the demo initiative's publications over kindergarten readiness at real size
  (``demo.generator.generate()``): readiness by school year x neighborhood and by school year x
  race/ethnicity, enrollment by school year x neighborhood; the new release is readiness by
  neighborhood x race/ethnicity;
* 200 releases over 1,000,000 synthetic records (5 periods, 40 areas, 7 groups, a flag and a
  three-way band): counts and rates along one or two attributes, some restricted to a slice.
  The history is built release by release, each protected jointly with those before it; the
  new release is a rate by area x period.

Target (issue 11): a release with 200 earlier ones costs at most 3x a release with none.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from disclosure.joint import (
    PERSON,
    SUBMISSION,
    Earlier,
    Obligations,
    Population,
    Shape,
    protect_in_population,
)

TARGET_RATIO = 3.0


def _earlier(shape: Shape, joint) -> Earlier:  # type: ignore[no-untyped-def]
    return Earlier(
        shape=shape,
        scope=frozenset({"s"}),
        published=joint.protection.published(),
        x=joint.x.ravel(),
        n=None if joint.n is None else joint.n.ravel(),
        limits=joint.protection.proof.limits(),
    )


def _time(population: Population, shape: Shape, earlier: list[Earlier], k: int, unit: str):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    joint = protect_in_population(
        population, shape, earlier, Obligations(k), unit, frozenset({"s"})
    )
    return time.perf_counter() - started, joint


def _report(name: str, alone: float, joint_seconds: float, summary: dict, history: int) -> float:
    ratio = joint_seconds / alone
    print(f"{name}: {history} earlier releases, joint cube {summary['joint_cells']:,} cells")
    print(f"  release alone:          {alone:8.2f} s")
    print(
        f"  with the whole history: {joint_seconds:8.2f} s  ({ratio:.2f}x;"
        f" {summary['requirements']} requirements, {summary['programs']} programs,"
        f" {summary['linked_tables']} linked tables)"
    )
    return ratio


def demo_history() -> float:
    from demo.generator import generate
    from demo.initiative import NEIGHBORHOODS, RACE_ETHNICITY, SCHOOL_YEARS

    records = generate().kindergarten_readiness
    declared = {
        "school_year": tuple(SCHOOL_YEARS),
        "neighborhood": tuple(NEIGHBORHOODS),
        "race_ethnicity": tuple(RACE_ETHNICITY),
        "ready": ("true", "false"),
    }
    frame = records.select(
        pl.col("student_id").hash().alias(PERSON),
        pl.lit("s").alias(SUBMISSION),
        pl.col("school_year"),
        pl.col("neighborhood"),
        pl.col("race_ethnicity"),
        pl.when(pl.col("ready")).then(pl.lit("true")).otherwise(pl.lit("false")).alias("ready"),
    )
    population = Population(frame, declared)

    def shape(dims: tuple[str, ...], rate: bool) -> Shape:
        return Shape(
            "kindergarten_readiness",
            dims,
            tuple(declared[d] for d in dims),
            {"ready": "true"} if rate else {},
            {} if rate else None,
        )

    history: list[Earlier] = []
    for dims, rate in (
        (("school_year", "neighborhood"), True),
        (("school_year", "race_ethnicity"), True),
        (("school_year", "neighborhood"), False),
    ):
        _, joint = _time(population, shape(dims, rate), history, 10, "percent" if rate else "count")
        history.append(_earlier(shape(dims, rate), joint))
    new = shape(("neighborhood", "race_ethnicity"), True)
    alone, _ = _time(population, new, [], 10, "percent")
    together, joint = _time(population, new, history, 10, "percent")
    print(f"demo: {records.height:,} kindergartners")
    return _report("demo history", alone, together, joint.summary, len(history))


CATEGORIES = {
    "period": tuple(f"p{i}" for i in range(5)),
    "area": tuple(f"a{i:02d}" for i in range(40)),
    "group": tuple(f"g{i}" for i in range(7)),
    "flag": ("true", "false"),
    "band": ("low", "mid", "high"),
}


def synthetic(size: int, seed: int = 20261204) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, size=40)
    weights /= weights.sum()
    group_p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.03, 0.01])

    def pick(name: str, p: np.ndarray | None = None) -> pl.Series:
        cats = CATEGORIES[name]
        return pl.Series(name, np.array(cats)[rng.choice(len(cats), size=size, p=p)])

    return pl.DataFrame(
        [
            pl.Series(PERSON, np.arange(size, dtype=np.uint64)),
            pl.Series(SUBMISSION, ["s"] * size),
            pick("period"),
            pick("area", weights),
            pick("group", group_p),
            pick("flag"),
            pick("band"),
        ]
    )


def random_shape(rng: np.random.Generator) -> tuple[Shape, str]:
    pool = ["period", "area", "group", "band"]
    dims = tuple(sorted(rng.choice(pool, size=int(rng.choice([1, 2])), replace=False).tolist()))
    free = [a for a in ("group", "band") if a not in dims]
    population: dict[str, str] = {}
    if free and rng.random() < 0.3:
        name = str(rng.choice(free))
        population[name] = str(rng.choice(CATEGORIES[name]))
    rate = bool(rng.random() < 0.5)
    numerator = {**population, **({"flag": "true"} if rate else {})}
    shape = Shape(
        "synthetic",
        dims,
        tuple(CATEGORIES[d] for d in dims),
        numerator,
        dict(population) if rate else None,
    )
    return shape, "percent" if rate else "count"


def large_history(size: int, releases: int) -> float:
    frame = synthetic(size)
    population = Population(frame, CATEGORIES)
    rng = np.random.default_rng(7)
    history: list[Earlier] = []
    started = time.perf_counter()
    seen: set[str] = set()
    while len(history) < releases:
        shape, unit = random_shape(rng)
        key = repr(shape.as_dict())
        if key in seen:
            continue
        seen.add(key)
        seconds, joint = _time(population, shape, history, 11, unit)
        history.append(_earlier(shape, joint))
        if len(history) % 10 == 0:
            print(
                f"  {len(history)} releases built; the last took {seconds:.2f} s"
                f" ({joint.summary['linked_tables']} linked)",
                flush=True,
            )
    built = time.perf_counter() - started
    print(f"{size:,} records; {releases} earlier releases built in {built:.0f} s")
    new = Shape(
        "synthetic",
        ("area", "period"),
        (CATEGORIES["area"], CATEGORIES["period"]),
        {"flag": "true", "group": "g6"},
        {"group": "g6"},
    )
    alone, _ = _time(population, new, [], 11, "percent")
    together, joint = _time(population, new, history, 11, "percent")
    return _report("synthetic history", alone, together, joint.summary, releases)


def information_loss() -> None:
    """Share of cells withheld and headline margins kept in the demo's releases without a
    cohort (``demo/indicators/releases.yaml``), protected jointly in order, at full size."""
    from demo.generator import generate
    from demo.initiative import BIRTH_YEARS, NEIGHBORHOODS, RACE_ETHNICITY, SCHOOL_YEARS

    data = generate()

    def flag(expr: pl.Expr, name: str) -> pl.Expr:
        return pl.when(expr).then(pl.lit("true")).otherwise(pl.lit("false")).alias(name)

    kr = data.kindergarten_readiness.with_columns(flag(pl.col("ready"), "ready"))
    absent = pl.col("days_absent") >= 0.1 * pl.col("days_enrolled")
    att = data.attendance.with_columns(flag(absent, "chronically_absent"))
    births = data.births.with_columns(
        flag(pl.col("birth_weight_grams") < 2500, "low_birth_weight"),
        pl.col("birth_year").cast(pl.Utf8),
    )
    cats = {
        "school_year": tuple(SCHOOL_YEARS),
        "neighborhood": tuple(NEIGHBORHOODS),
        "race_ethnicity": tuple(RACE_ETHNICITY),
        "grade": tuple(sorted(att.get_column("grade").unique().to_list())),
        "birth_year": tuple(str(y) for y in BIRTH_YEARS),
    }
    sets = {
        "kindergarten": (kr, "student_id", "ready"),
        "attendance": (att, "student_id", "chronically_absent"),
        "births": (births, "child_id", "low_birth_weight"),
    }
    plan = [
        ("kindergarten readiness", "kindergarten", ("school_year", "neighborhood"), True, 10),
        ("kindergarten readiness", "kindergarten", ("school_year", "race_ethnicity"), True, 10),
        ("kindergarten enrollment", "kindergarten", ("school_year", "neighborhood"), False, 10),
        ("chronic absenteeism", "attendance", ("school_year", "neighborhood"), True, 10),
        ("chronic absenteeism", "attendance", ("school_year", "grade"), True, 10),
        ("low birth weight", "births", ("birth_year", "neighborhood"), True, 11),
        ("low birth weight", "births", ("birth_year", "race_ethnicity"), True, 11),
    ]
    histories: dict[str, list[Earlier]] = {}
    print("information loss of the demo's releases, protected jointly in order:")
    for title, source, dims, rate, k in plan:
        frame, person, outcome = sets[source]
        declared = {a: cats[a] for a in cats if a in frame.columns} | {outcome: ("true", "false")}
        records = frame.select(
            pl.col(person).hash().alias(PERSON),
            pl.lit("s").alias(SUBMISSION),
            *(pl.col(a).cast(pl.Utf8) for a in declared),
        )
        shape = Shape(
            source,
            dims,
            tuple(cats[d] for d in dims),
            {outcome: "true"} if rate else {},
            {} if rate else None,
        )
        history = histories.setdefault(source, [])
        _, joint = _time(
            Population(records, declared), shape, history, k, "percent" if rate else "count"
        )
        history.append(_earlier(shape, joint))
        status = joint.protection.status
        withheld = np.isin(status, ["primary", "secondary"])
        level = sum(np.indices(status.shape)[a] == status.shape[a] - 1 for a in range(status.ndim))
        headline = level >= 1
        print(
            f"  {title:<24} {' x '.join(dims):<30} withheld {withheld.mean():6.1%},"
            f" headline margins kept {int((headline & ~withheld).sum())}/{int(headline.sum())}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--releases", type=int, default=None)
    parser.add_argument("--loss", action="store_true", help="only the demo's information loss")
    args = parser.parse_args(argv)
    information_loss()
    if args.loss:
        return 0
    demo_history()
    size, releases = (100_000, 50) if args.quick else (1_000_000, 200)
    size = args.records or size
    releases = args.releases or releases
    ratio = large_history(size, releases)
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"{verdict} the {TARGET_RATIO:.0f}x target ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
