"""Draw personas from survey respondents: stratified by group, survey-weighted, seeded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from polypref.errors import ConfigError
from polypref.population import portrayal
from polypref.population.spec import SurveySpec
from polypref.population.survey import Respondents, respondents
from polypref.records import Persona, content_hash

Allocation = str | dict[str, float]


@dataclass(frozen=True)
class Population:
    spec: SurveySpec
    personas: tuple[Persona, ...]
    group_shares: dict[str, float]  # weighted share of each group among the usable respondents
    group_counts: dict[str, int]  # personas drawn per group
    respondents_total: int
    respondents_used: int
    dropped: dict[str, int] = field(default_factory=dict)

    def portrayer(self, hold_out: bool) -> portrayal.Portrayer:
        """Portrayals for judging with this population's template (loaded and checked when it was sampled)."""
        source = self.spec.path or self.spec.name
        topics = {t: item.topic for t, item in self.spec.attitudes.items.items()}
        return portrayal.Portrayer(portrayal.load(self.spec.portrayal, source), source, topics, hold_out)


def group_shares(frame: pl.DataFrame) -> dict[str, float]:
    """Survey-weighted share of each group, sorted by group name."""
    sums = frame.group_by("group").agg(pl.col("weight").sum()).sort("group")
    total = float(sums["weight"].sum())
    return {g: float(w) / total for g, w in sums.iter_rows()}


def allocate(shares: dict[str, float], size: int, allocation: Allocation, source: str = "config") -> dict[str, int]:
    """Personas per group. Proportions become counts by largest remainder, so counts always sum to size."""
    field_name = "population.allocation"
    if allocation == "proportional":
        targets = shares
    elif allocation == "equal":
        targets = {g: 1 / len(shares) for g in shares}
    elif isinstance(allocation, dict):
        unknown = sorted(set(allocation) - set(shares))
        if unknown:
            raise ConfigError(source, [(f"{field_name}.{unknown[0]}", f"unknown group; groups: {sorted(shares)}")])
        values = list(allocation.values())
        negative = sorted(g for g, v in allocation.items() if not v >= 0)
        if negative:
            raise ConfigError(source, [(f"{field_name}.{negative[0]}", "must be a number >= 0")])
        total = sum(values)
        if all(float(v).is_integer() for v in values) and total == size:
            return {g: int(allocation.get(g, 0)) for g in shares}
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(
                source,
                [
                    (
                        field_name,
                        f"give counts summing to population.size ({size}) or proportions summing to 1; "
                        f"these sum to {total:g}",
                    )
                ],
            )
        targets = {g: float(allocation.get(g, 0.0)) for g in shares}
    else:
        raise ConfigError(source, [(field_name, f"unknown allocation {allocation!r}")])
    raw = {g: targets[g] * size for g in shares}
    counts = {g: math.floor(v) for g, v in raw.items()}
    short = size - sum(counts.values())
    by_remainder = sorted(shares, key=lambda g: (-(raw[g] - counts[g]), g))
    for g in by_remainder[:short]:
        counts[g] += 1
    return counts


def sample_population(
    spec: SurveySpec,
    size: int,
    allocation: Allocation = "proportional",
    seed: int = 0,
    source: str = "config",
    survey: Respondents | None = None,
) -> Population:
    """Draw ``size`` personas: within a group, respondents with replacement, p proportional to weight.

    A persona's id hashes (spec, respondent, replicate), so the first draw of a respondent has the same id
    in every population built from the spec. Its weight is group population share / group sample share,
    which restores population proportions under non-proportional allocation.
    """
    survey = survey or respondents(spec)
    frame = survey.frame
    shares = group_shares(frame)
    counts = allocate(shares, size, allocation, source)

    picks: list[np.ndarray] = []
    for index, (group, count) in enumerate(counts.items()):
        if count == 0:
            continue
        rows = np.flatnonzero((frame["group"] == group).to_numpy())
        weights = frame["weight"].to_numpy()[rows]
        rng = np.random.default_rng([seed, index])
        picks.append(rows[rng.choice(len(rows), size=count, replace=True, p=weights / weights.sum())])
    order = np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
    order = order[np.random.default_rng([seed, len(counts)]).permutation(len(order))]

    drawn = frame[order]
    persona_weight = {g: shares[g] / (c / size) for g, c in counts.items() if c}
    source_file = spec.path or spec.name
    template = portrayal.load(spec.portrayal, source_file)
    topics = {t: item.topic for t, item in spec.attitudes.items.items()}
    seen: dict[str, int] = {}
    personas = []
    for row in drawn.iter_rows(named=True):
        rid = row["respondent_id"]
        replicate = seen.get(rid, 0)
        seen[rid] = replicate + 1
        attributes = {n: row[f"a:{n}"] for n in spec.attributes}
        views = {t: row[f"v:{t}"] for t in topics}
        personas.append(
            Persona(
                id=content_hash(spec.name, rid, replicate),
                spec=spec.name,
                respondent_id=rid,
                replicate=replicate,
                group=row["group"],
                attributes=attributes,
                attitudes=views,
                positions={t: row[f"p:{t}"] for t in topics},
                weight=persona_weight[row["group"]],
                portrayal=portrayal.render(template, source_file, rid, attributes, views, topics),
            )
        )
    return Population(
        spec=spec,
        personas=tuple(personas),
        group_shares=shares,
        group_counts=counts,
        respondents_total=survey.total,
        respondents_used=frame.height,
        dropped=survey.dropped,
    )
