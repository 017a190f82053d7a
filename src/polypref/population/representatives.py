"""Representative personas: k portrayals per group that stand for a sampled population, as Fair-PP's 7 segments
stood for the UK electorate, but each one a real sampled respondent with the population weight of its cluster.

Judging costs grow with personas; a handful of representatives per group keeps the spread of views at a
fraction of the cost. Each group's sampled personas are clustered on their attitudes by weighted k-medoids
(k-means++ starts, alternating assignment and medoid updates, the cheapest of a few seeded restarts), so a
representative is a medoid: a persona that was drawn, with its own portrayal, never an average nobody holds.

Distance between two personas: the root mean square over topics of a per-topic gap, |a - b| on the topic's
0..1 scale when both answered, 0 when neither did and 0.5 when only one did (a persona's "not answered" is
portrayed, so it is a view of its own, half a scale from any answer). Unlike skipping unanswered topics, this
is a metric: distinct attitude profiles are never at distance 0.

Weight convention: a representative's ``weight`` is the sum of the weights of the sampled personas its
cluster holds (``stands_for`` of them, itself included). A weighted statistic over the representatives thus
estimates the same population quantity as over the full sample: a group's representatives carry exactly the
weight its sampled personas carried (its population share times the population size under proportional
allocation, up to apportionment), and all representatives together carry the sample's total weight.

Deterministic: one seeded stream per group (seeded from the build seed and the group's name), no dependence on
hash seed, thread count or BLAS (distances are elementwise numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from polypref.population.sample import Population
from polypref.records import Persona, content_hash

RESTARTS = 8  # seeded k-means++ starts per group; the cheapest clustering wins
MAX_ITERATIONS = 100  # alternating steps per start (it converges in a handful on survey data)
CANDIDATES = 200  # medoid candidates of a cluster with more distinct profiles: those nearest its mean
MISSING_GAP = 0.5  # per-topic gap between an answer and "not answered"
_BLOCK = 1 << 22  # distance terms computed at once (bounded memory on big groups)


@dataclass(frozen=True, slots=True)
class Cluster:
    """One representative and the sampled personas (indices into the sample) it stands for."""

    index: int  # the representative's index in the sample
    persona: Persona  # the representative, carrying its cluster's weight
    members: tuple[int, ...]  # sample indices of the cluster, in sample order, the representative among them


@dataclass(frozen=True)
class Represented(Population):
    """A population of representatives. ``group_counts`` counts representatives; what was sampled is kept so
    the card can say how many personas they stand for."""

    stands_for: tuple[int, ...] = ()  # per persona: how many sampled personas its cluster holds
    sampled_counts: dict[str, int] = field(default_factory=dict)  # personas sampled per group before clustering


def positions_matrix(personas: Sequence[Persona], topics: Sequence[str]) -> np.ndarray:
    """Personas x topics positions (0..1), NaN where not answered."""
    matrix = np.full((len(personas), len(topics)), np.nan)
    for i, persona in enumerate(personas):
        for j, topic in enumerate(topics):
            value = persona.positions.get(topic)
            if value is not None:
                matrix[i, j] = value
    return matrix


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every row of ``a`` to every row of ``b`` (positions, NaN = not answered): see the module."""
    out = np.empty((len(a), len(b)))
    topics = max(a.shape[1], 1)
    b_missing = np.isnan(b)
    step = max(1, _BLOCK // max(1, len(b)))
    for start in range(0, len(a), step):
        block = a[start : start + step]
        block_missing = np.isnan(block)
        total = np.zeros((len(block), len(b)))
        for t in range(a.shape[1]):  # one topic at a time: a few (rows x len(b)) arrays, never a cube
            gap = np.subtract.outer(block[:, t], b[:, t])
            gap *= gap
            if block_missing[:, t].any() or b_missing[:, t].any():
                one = np.logical_xor.outer(block_missing[:, t], b_missing[:, t])
                gap = np.where(np.isnan(gap), np.where(one, MISSING_GAP**2, 0.0), gap)
            total += gap
        out[start : start + step] = np.sqrt(total / topics)
    return out


def cluster(
    positions: np.ndarray, weights: np.ndarray, k: int, seed: int | Sequence[int], candidates: int = CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-medoids of the rows of ``positions``: (medoids, labels), the row index of each cluster's medoid
    (ascending) and each row's cluster. At most k clusters; rows with identical profiles always share one, and
    the medoid of a profile held by several rows is the first of them. Fewer than k distinct profiles give one
    cluster each; k >= the number of rows keeps every row on its own."""
    n = len(positions)
    if n <= k:
        return np.arange(n), np.arange(n)
    key = np.where(np.isnan(positions), -1.0, positions)  # positions are 0..1: -1 marks "not answered"
    profiles, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = np.full(len(profiles), n)
    np.minimum.at(first, inverse, np.arange(n))
    if len(profiles) <= k:
        medoids, labels = np.arange(len(profiles)), np.arange(len(profiles))
    else:
        points = np.where(profiles < 0, np.nan, profiles)
        mass = np.bincount(inverse, weights=weights, minlength=len(profiles))
        medoids, labels = _k_medoids(points, mass, k, np.random.default_rng(seed), candidates)
    # renumber clusters by their medoid's first row, so output order follows the sample
    medoid_rows = first[medoids]
    order = np.argsort(medoid_rows, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return medoid_rows[order], rank[labels[inverse]]


def _k_medoids(
    points: np.ndarray, mass: np.ndarray, k: int, rng: np.random.Generator, candidates: int
) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest of RESTARTS runs (first on ties): medoid point indices and each point's cluster."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(RESTARTS):
        medoids = _plus_plus(points, mass, k, rng)
        for _ in range(MAX_ITERATIONS):
            to_medoids = distances(points, points[medoids])
            labels = np.argmin(to_medoids, axis=1)
            updated = np.array([_medoid(points, mass, labels == c, m, candidates) for c, m in enumerate(medoids)])
            if np.array_equal(updated, medoids):
                break
            medoids = updated
        to_medoids = distances(points, points[medoids])
        labels = np.argmin(to_medoids, axis=1)
        cost = math.fsum(mass * to_medoids[np.arange(len(points)), labels])
        if best is None or cost < best[0]:
            best = (cost, medoids, labels)
    assert best is not None
    return best[1], best[2]


def _plus_plus(points: np.ndarray, mass: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ starting medoids: the first by weight, each next by weight x squared distance to the nearest
    chosen (distinct points are at positive distance, so k distinct ones are always found)."""
    chosen = [int(_draw(mass, rng))]
    nearest = distances(points, points[chosen]).reshape(-1)
    for _ in range(1, k):
        chosen.append(int(_draw(mass * nearest**2, rng)))
        nearest = np.minimum(nearest, distances(points, points[chosen[-1:]]).reshape(-1))
    return np.array(chosen)


def _draw(p: np.ndarray, rng: np.random.Generator) -> int:
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


def _medoid(points: np.ndarray, mass: np.ndarray, member: np.ndarray, current: int, candidates: int) -> int:
    """The member minimising the weighted distance to the cluster's members; the current medoid on ties, so
    the alternation stops. A cluster with more than ``candidates`` profiles tries those nearest its mean."""
    members = np.flatnonzero(member)
    tried = members
    if len(members) > candidates:
        answered = ~np.isnan(points[members])
        w = mass[members, None] * answered
        with np.errstate(invalid="ignore"):
            mean = (np.where(answered, points[members], 0.0) * w).sum(axis=0) / w.sum(axis=0)
        near = np.argsort(distances(points[members], mean[None, :]).reshape(-1), kind="stable")[:candidates]
        tried = np.union1d(members[near], [current])
    costs = (distances(points[tried], points[members]) * mass[members]).sum(axis=1)
    if current in tried and costs[np.searchsorted(tried, current)] <= costs.min():
        return current
    return int(tried[np.argmin(costs)])


def choose(personas: Sequence[Persona], topics: Sequence[str], k: int, seed: int) -> tuple[Cluster, ...]:
    """Per group (personas' ``group``), at most k clusters of personas on their attitudes over ``topics``; each
    cluster's representative carries the summed weight of its members. In sample order of representatives."""
    groups: dict[str, list[int]] = {}
    for i, persona in enumerate(personas):
        groups.setdefault(persona.group, []).append(i)
    clusters: list[Cluster] = []
    for group, rows in groups.items():
        members = [personas[i] for i in rows]
        weights = np.array([p.weight for p in members], dtype=float)
        group_seed = [seed, int(content_hash("representatives", group), 16)]
        medoids, labels = cluster(positions_matrix(members, topics), weights, k, group_seed)
        for c, medoid in enumerate(medoids):
            held = np.flatnonzero(labels == c)
            persona = members[int(medoid)]
            weight = math.fsum(weights[held]) if len(held) > 1 else persona.weight
            if weight != persona.weight:
                persona = replace(persona, weight=weight)
            clusters.append(Cluster(rows[int(medoid)], persona, tuple(rows[int(j)] for j in held)))
    return tuple(sorted(clusters, key=lambda c: c.index))


def represent(population: Population, k: int, seed: int) -> Represented:
    """The population of at most k representatives per group that stand for ``population``'s personas."""
    topics = list(population.spec.attitudes.items)
    clusters = choose(population.personas, topics, k, seed)
    counts = dict.fromkeys(population.group_counts, 0)
    for c in clusters:
        counts[c.persona.group] += 1
    return Represented(
        spec=population.spec,
        personas=tuple(c.persona for c in clusters),
        group_shares=population.group_shares,
        group_counts=counts,
        respondents_total=population.respondents_total,
        respondents_used=population.respondents_used,
        dropped=population.dropped,
        stands_for=tuple(len(c.members) for c in clusters),
        sampled_counts=dict(population.group_counts),
    )


def summary(population: Population) -> dict[str, Any] | None:
    """For the report and card: how many representatives stand for how many sampled personas, per group and in
    all, with the weight each group's representatives carry (None for a population judged in full)."""
    if not isinstance(population, Represented):
        return None
    weight: dict[str, list[float]] = {}
    for p in population.personas:
        weight.setdefault(p.group, []).append(p.weight)
    return {
        "representatives": len(population.personas),
        "sampled_personas": sum(population.sampled_counts.values()),
        "groups": {
            g: {
                "representatives": population.group_counts.get(g, 0),
                "sampled": n,
                "weight": math.fsum(weight.get(g, [])),
            }
            for g, n in population.sampled_counts.items()
            if n
        },
        "stands_for": {p.id: n for p, n in zip(population.personas, population.stands_for, strict=True)},
    }
