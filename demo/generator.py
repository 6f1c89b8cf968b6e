"""Synthetic records for the demo initiative, from a fixed seed.

The numbers follow the published shape of such data, not any real place: about 2,600 children a
year across 40 neighborhoods of very different sizes (so small cells occur), readiness near 55%
with gaps by neighborhood poverty and pre-K attendance, chronic absenteeism near 20% (10% or more
of enrolled days missed), and low birth weight near 8%. Every child has a statewide identifier
used by all three partners, which is what makes linkage possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from demo.initiative import NEIGHBORHOODS, PREK_PROGRAMS, RACE_ETHNICITY

SEED = 20261123
COHORTS = tuple(range(2013, 2021))  # birth years of the children in K-3 during 2021-22..2025-26
BIRTHS_PER_YEAR = 3000
RACE_BASE = np.array([0.01, 0.07, 0.22, 0.30, 0.005, 0.34, 0.055])
RACE_READINESS = np.array([-0.25, 0.25, -0.30, -0.20, -0.10, 0.30, 0.0])
RACE_LBW = np.array([0.0, 0.1, 0.55, 0.05, 0.1, -0.1, 0.1])


def _school_year(start: int) -> str:
    return f"{start}-{str(start + 1)[-2:]}"


@dataclass(frozen=True)
class DemoData:
    kindergarten_readiness: pl.DataFrame
    attendance: pl.DataFrame
    births: pl.DataFrame
    prek_enrollment: pl.DataFrame


def _neighborhoods(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(NEIGHBORHOODS)
    weights = rng.lognormal(mean=0.0, sigma=0.9, size=n)
    weights[rng.choice(n, size=6, replace=False)] *= 0.08  # a few very small neighborhoods
    weights /= weights.sum()
    poverty = rng.beta(2.0, 3.0, size=n)
    race_mix = np.stack([rng.dirichlet(RACE_BASE * 40 + 0.2) for _ in range(n)])
    return weights, poverty, race_mix


def generate(seed: int = SEED, births_per_year: int = BIRTHS_PER_YEAR) -> DemoData:
    rng = np.random.default_rng(seed)
    weights, poverty, race_mix = _neighborhoods(rng)
    children = []
    next_id = 10_000_000
    for year in COHORTS:
        count = int(births_per_year * rng.uniform(0.95, 1.05))
        hood = rng.choice(len(NEIGHBORHOODS), size=count, p=weights)
        race = np.array([rng.choice(len(RACE_ETHNICITY), p=race_mix[h]) for h in hood])
        ids = np.arange(next_id, next_id + count)
        next_id += count
        children.append((year, ids, hood, race))

    births_rows, prek_rows, k_rows, att_rows = [], [], [], []
    for year, ids, hood, race in children:
        pov = poverty[hood]
        # Births (only the cohorts the health agreement covers).
        weight = rng.normal(3420, 500, size=ids.size) - 380 * pov - 260 * RACE_LBW[race]
        weight = np.clip(weight, 400, 6000).round().astype(int)
        weeks = np.clip(
            np.round(39 + (weight - 3300) / 450 + rng.normal(0, 1.2, ids.size)), 22, 43
        ).astype(int)
        if 2016 <= year <= 2020:
            births_rows.append(
                pl.DataFrame(
                    {
                        "child_id": [f"RV{i:08d}" for i in ids],
                        "birth_year": [str(year)] * ids.size,
                        "neighborhood": [NEIGHBORHOODS[h] for h in hood],
                        "race_ethnicity": [RACE_ETHNICITY[r] for r in race],
                        "birth_weight_grams": weight,
                        "gestational_weeks": weeks,
                    }
                )
            )
        # Pre-K, the year before kindergarten; Head Start targets poorer neighborhoods.
        prek = rng.random(ids.size) < (0.30 + 0.30 * pov)
        prek_year = year + 4
        if 2020 <= prek_year <= 2024:
            sel = np.flatnonzero(prek)
            program = np.where(pov[sel] > 0.5, 0, rng.choice([1, 2], size=sel.size))
            prek_rows.append(
                pl.DataFrame(
                    {
                        "child_id": [f"RV{ids[i]:08d}" for i in sel],
                        "school_year": [_school_year(prek_year)] * sel.size,
                        "neighborhood": [NEIGHBORHOODS[hood[i]] for i in sel],
                        "program_type": [PREK_PROGRAMS[p] for p in program],
                        "days_attended": rng.integers(90, 180, size=sel.size),
                    }
                )
            )
        # About 88% of children born here enrol in the district's kindergarten.
        enrolled = rng.random(ids.size) < 0.88
        k_year = year + 5
        if 2021 <= k_year <= 2025:
            sel = np.flatnonzero(enrolled)
            logit = (
                0.35
                - 1.4 * pov[sel]
                + 0.55 * prek[sel]
                + RACE_READINESS[race[sel]]
                + rng.normal(0, 0.3, sel.size)
            )
            ready = rng.random(sel.size) < 1 / (1 + np.exp(-logit))
            score = np.clip(np.round(55 + 18 * ready + rng.normal(0, 9, sel.size)), 0, 100).astype(
                int
            )
            k_rows.append(
                pl.DataFrame(
                    {
                        "student_id": [f"RV{ids[i]:08d}" for i in sel],
                        "school_year": [_school_year(k_year)] * sel.size,
                        "neighborhood": [NEIGHBORHOODS[hood[i]] for i in sel],
                        "race_ethnicity": [RACE_ETHNICITY[race[i]] for i in sel],
                        "ready": ready,
                        "assessment_score": score,
                    }
                )
            )
        # Attendance for grades K-3 inside the five school years.
        for grade_index, grade in enumerate(("K", "1", "2", "3")):
            start = year + 5 + grade_index
            if not 2021 <= start <= 2025:
                continue
            sel = np.flatnonzero(enrolled)
            days = rng.integers(150, 181, size=sel.size)
            rate = rng.beta(1.2, 24, size=sel.size) * (1 + 1.0 * pov[sel])
            absent = np.minimum(np.round(days * rate), days).astype(int)
            att_rows.append(
                pl.DataFrame(
                    {
                        "student_id": [f"RV{ids[i]:08d}" for i in sel],
                        "school_year": [_school_year(start)] * sel.size,
                        "neighborhood": [NEIGHBORHOODS[hood[i]] for i in sel],
                        "grade": [grade] * sel.size,
                        "days_enrolled": days,
                        "days_absent": absent,
                    }
                )
            )
    return DemoData(
        kindergarten_readiness=pl.concat(k_rows),
        attendance=pl.concat(att_rows),
        births=pl.concat(births_rows),
        prek_enrollment=pl.concat(prek_rows),
    )
