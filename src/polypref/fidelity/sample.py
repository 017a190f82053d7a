"""Who the fidelity check asks and how often: personas spread evenly across groups and weighted back to the
population, and the answers drawn per question (``Sampling``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from polypref.config import BuildConfig
from polypref.records import Persona


def spread(personas: Sequence[Persona], n: int | None) -> list[int]:
    """The rows of ``n`` personas spread as evenly as they go across groups (all when ``n`` is None or not
    smaller): groups take turns in order of name, each giving its next persona in population order, so within
    each group the personas asked are its first ones, as the population grows or n does. Score the sample with
    ``poststratified`` weights: it over-represents small groups."""
    if n is None or n >= len(personas):
        return list(range(len(personas)))
    members: dict[str, list[int]] = {}
    for i, p in enumerate(personas):
        members.setdefault(p.group, []).append(i)
    queues = [members[g] for g in sorted(members)]
    chosen: list[int] = []
    for turn in range(max(len(q) for q in queues)):
        chosen += [q[turn] for q in queues if turn < len(q)][: n - len(chosen)]
        if len(chosen) == n:
            break
    return sorted(chosen)


def poststratified(personas: Sequence[Persona], rows: Sequence[int]) -> list[Persona]:
    """The personas at ``rows`` with their weights scaled so that each group weighs in the sample what it weighs
    in the whole population: an even spread across groups would otherwise count a small group as much as a
    large one in every overall figure."""
    if len(rows) == len(personas):
        return list(personas)
    population: dict[str, float] = {}
    for p in personas:
        population[p.group] = population.get(p.group, 0.0) + p.weight
    chosen = [personas[i] for i in rows]
    sample: dict[str, float] = {}
    for p in chosen:
        sample[p.group] = sample.get(p.group, 0.0) + p.weight
    return [replace(p, weight=p.weight * population[p.group] / sample[p.group]) for p in chosen]


@dataclass(frozen=True)
class Sampling:
    """How the check draws several answers per question: ``samples`` draws at ``temperature``."""

    samples: int
    temperature: float


def sampling(config: BuildConfig) -> Sampling | None:
    """How the check draws answers: ``fidelity.samples`` draws at its temperature (None: once, greedily, as one
    sample asks; the simulator answers from the true attitudes)."""
    fidelity = config.fidelity
    if config.judge.backend == "simulated" or fidelity.samples == 1:
        return None
    return Sampling(fidelity.samples, fidelity.temperature)
