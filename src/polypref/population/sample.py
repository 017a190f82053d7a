"""Draw personas from survey respondents: stratified by group, survey-weighted, seeded."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

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
        template = portrayal.load(self.spec.portrayal, source, spec_path=self.spec.path)
        return portrayal.Portrayer(template, source, topics, hold_out)


def group_shares(frame: pl.DataFrame) -> dict[str, float]:
    """Survey-weighted share of each group, sorted by group name."""
    sums = frame.group_by("group").agg(pl.col("weight").sum()).sort("group")
    total = float(sums["weight"].sum())
    return {g: float(w) / total for g, w in sums.iter_rows()}


def allocation_targets(
    shares: dict[str, float], size: int, allocation: Allocation, source: str = "config"
) -> dict[str, float]:
    """Each group's designed share of the personas (summing to 1), checked against the survey's groups."""
    field_name = "population.allocation"
    if allocation == "proportional":
        return dict(shares)
    if allocation == "equal":
        return {g: 1 / len(shares) for g in shares}
    if not isinstance(allocation, dict):
        raise ConfigError(source, [(field_name, f"unknown allocation {allocation!r}")])
    unknown = sorted(set(allocation) - set(shares))
    if unknown:
        raise ConfigError(source, [(f"{field_name}.{unknown[0]}", f"unknown group; groups: {sorted(shares)}")])
    negative = sorted(g for g, v in allocation.items() if not v >= 0)
    if negative:
        raise ConfigError(source, [(f"{field_name}.{negative[0]}", "must be a number >= 0")])
    values = list(allocation.values())
    total = sum(values)
    counts = all(float(v).is_integer() for v in values) and total == size
    if not counts and not math.isclose(total, 1.0, abs_tol=1e-6):
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
    return {g: float(allocation.get(g, 0.0)) / total for g in shares}


def apportion(targets: dict[str, float], size: int) -> list[str]:
    """The group of each of ``size`` personas, in order: seat after seat to the group with the highest
    Sainte-Lague quotient target / (2 * seats + 1).

    Sequential, so the first N groups of a population of N + M are those of a population of N (a grown
    population keeps every persona it had), and any prefix is apportioned as Webster's method would: within
    about one persona of each group's target. Groups interleave, so every shard of personas is representative.
    """
    heap = [(-t, i, g) for i, (g, t) in enumerate(targets.items()) if t > 0]
    heapq.heapify(heap)
    seats = dict.fromkeys(targets, 0)
    order: list[str] = []
    for _ in range(size):
        _, i, g = heapq.heappop(heap)
        order.append(g)
        seats[g] += 1
        heapq.heappush(heap, (-targets[g] / (2 * seats[g] + 1), i, g))
    return order


def allocate(shares: dict[str, float], size: int, allocation: Allocation, source: str = "config") -> dict[str, int]:
    """Personas per group (summing to size)."""
    order = apportion(allocation_targets(shares, size, allocation, source), size)
    return {g: order.count(g) for g in shares}


def sample_population(
    spec: SurveySpec,
    size: int,
    allocation: Allocation = "proportional",
    seed: int = 0,
    source: str = "config",
    survey: Respondents | None = None,
    counts_for: int | None = None,
) -> Population:
    """Draw ``size`` personas: groups in the order ``apportion`` gives, and within a group respondents with
    replacement, p proportional to weight, from one seeded stream per group.

    Stable under growth: the first N personas of a population of N + M are the population of N, so a refresh
    that adds personas keeps every judgment made so far. A persona's id hashes (spec, respondent, replicate),
    so the first draw of a respondent has the same id in every population built from the spec. Its weight is
    the group's population share / its designed share of the personas, which restores population proportions
    under non-proportional allocation (and is 1 under proportional allocation). ``counts_for``: the size an
    allocation's counts are given for (population.size, when refreshes grew the population past it); they are
    the same shares at any size.
    """
    survey = survey or respondents(spec)
    frame = survey.frame
    shares = group_shares(frame)
    targets = allocation_targets(shares, counts_for or size, allocation, source)
    groups = apportion(targets, size)
    counts = {g: 0 for g in shares}
    for g in groups:
        counts[g] += 1
    order = _drawn_rows(frame, groups, counts, seed)
    persona_weight = {g: shares[g] / targets[g] for g, c in counts.items() if c}
    return Population(
        spec=spec,
        personas=_personas(spec, frame, order, persona_weight),
        group_shares=shares,
        group_counts=counts,
        respondents_total=survey.total,
        respondents_used=frame.height,
        dropped=survey.dropped,
    )


def _drawn_rows(frame: pl.DataFrame, groups: list[str], counts: dict[str, int], seed: int) -> np.ndarray:
    """The frame row of each persona, in order: within a group, respondents with replacement, p proportional to
    weight, from the group's own seeded stream."""
    group_rows = frame["group"].to_numpy()
    all_weights = frame["weight"].to_numpy()
    draws: dict[str, np.ndarray] = {}
    for index, (group, count) in enumerate(counts.items()):
        if count == 0:
            continue
        rows = np.flatnonzero(group_rows == group)
        cdf = np.cumsum(all_weights[rows])
        # one uniform per persona from the group's own stream: drawing more later extends, never reshuffles
        u = np.random.default_rng([seed, index]).random(count) * cdf[-1]
        draws[group] = rows[np.minimum(np.searchsorted(cdf, u, side="right"), len(rows) - 1)]
    taken = dict.fromkeys(counts, 0)
    order = np.empty(len(groups), dtype=np.int64)
    for k, g in enumerate(groups):
        order[k] = draws[g][taken[g]]
        taken[g] += 1
    return order


_Views = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], str]


def _views(spec: SurveySpec, frame: pl.DataFrame, order: np.ndarray) -> dict[int, _Views]:
    """Each drawn row's (row, attributes, views, positions, portrayal). A respondent is drawn many times in a large
    population: its views and portrayal are built once and shared (92,593 personas of 1,543 respondents: 580 MB as
    copies)."""
    source_file = spec.path or spec.name
    template = portrayal.load(spec.portrayal, source_file, spec_path=spec.path)
    topics = {t: item.topic for t, item in spec.attitudes.items.items()}
    drawn_rows = np.unique(order)
    views_of: dict[int, _Views] = {}
    for index, row in zip(drawn_rows.tolist(), frame[drawn_rows].iter_rows(named=True), strict=True):
        attributes = {n: row[f"a:{n}"] for n in spec.attributes}
        views = {t: row[f"v:{t}"] for t in topics}
        positions = {t: row[f"p:{t}"] for t in topics}
        rendered = portrayal.render(template, source_file, row["respondent_id"], attributes, views, topics)
        views_of[index] = (row, attributes, views, positions, rendered)
    return views_of


def _personas(
    spec: SurveySpec, frame: pl.DataFrame, order: np.ndarray, persona_weight: dict[str, float]
) -> tuple[Persona, ...]:
    """A persona per drawn row; the n-th draw of a respondent is its replicate n."""
    views_of = _views(spec, frame, order)
    seen: dict[str, int] = {}
    personas = []
    for index in order.tolist():
        row, attributes, views, positions, rendered = views_of[index]
        rid = row["respondent_id"]
        replicate = seen.get(rid, 0)
        seen[rid] = replicate + 1
        personas.append(
            Persona(
                id=content_hash(spec.name, rid, replicate),
                spec=spec.name,
                respondent_id=rid,
                replicate=replicate,
                group=row["group"],
                attributes=attributes,
                attitudes=views,
                positions=positions,
                weight=persona_weight[row["group"]],
                portrayal=rendered,
            )
        )
    return tuple(personas)
