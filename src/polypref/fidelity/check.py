"""The fidelity check: do the personas answer the survey's own questions the way the people they stand for did?

Each persona is asked each checked attitude question with the survey's answer options, its own answer to that
question held out of its portrayal. Per social group, and for the whole population (personas weighted by their
post-stratification weight), the answer distribution is compared with the survey's weighted distribution of
the same question: total variation distance, and OpinionQA's alignment (1 - normalised Wasserstein distance on
the ordinal scale). Each figure is the mean over the checked questions.

Two references come with the personas' figures. ``baseline``: the same judge asked without a persona (the gain
from role-play is the difference). ``floor``: the personas' own survey answers scored the same way, which is
what a perfect role-player would score: a group of 8 personas cannot match its survey distribution closer than
sampling lets it. A group's excess over its floor (``FidelityReport.excess_tvd``) is what role-play itself adds.

Marginals can match while every persona answers someone else's answer, so each persona's answer is also held
against its own respondent's (``Individual``): exact match and ordinal distance, beside a demographics-only guess
(its group's most common answer), the persona-free model's answer and a uniformly random option.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polypref.fidelity.asking import llm_answers
from polypref.fidelity.questions import checked_topics
from polypref.fidelity.results import FidelityReport, Individual
from polypref.fidelity.sample import Sampling, poststratified, spread
from polypref.fidelity.scoring import (
    averaged,
    chance,
    demographic_answers,
    matches,
    modal_answers,
    own_answers,
    score,
    survey_targets,
)
from polypref.fidelity.store import AnswerStore
from polypref.population.baseline import persona_free
from polypref.population.sample import Population
from polypref.population.spec import SurveySpec
from polypref.records import Persona

Answers = dict[str, list[str | None]]  # topic -> answers, draw-major (draw j of persona i at j * personas + i)


def check(
    population: Population,
    frame: pl.DataFrame,
    judge: Any,
    seed: int,
    work: Path,
    topics: Sequence[str] | None = None,
    personas: int | None = None,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
    sampling: Sampling | None = None,
) -> FidelityReport:
    """Ask, score and compare. ``frame`` is the survey's respondents (population.survey.respondents) the
    population was drawn from; ``judge`` the build's judge config; ``personas`` how many to ask, spread across
    groups (``spread``) and weighted back to the population (``poststratified``); ``sampling`` how many answers
    to draw per question; ``store`` and ``stop_if_unreachable`` as ``ask`` takes them.

    With several draws, each draw's answers are scored against the survey as one answer per persona and the
    figures averaged over draws, so the personas carry the same sampling noise as the floor (one answer each);
    pooling the draws would let a model that ignores the persona beat perfect role-play. The persona-free
    baseline is its draws' pooled distribution. Each persona's individual figures use its most common draw
    (``modal_answers``), as the demographics-only guess is a most common answer."""
    spec = population.spec
    chosen = poststratified(population.personas, spread(population.personas, personas))
    checked = checked_topics(spec, topics)
    targets = survey_targets(frame, spec, checked)
    floor = own_answers(chosen, checked)
    answers, free, no_answer, name, samples = _answers(
        population, chosen, checked, judge, seed, work, store, stop_if_unreachable, sampling, floor
    )
    n = len(chosen)
    per_draw = [
        score({t: a[j * n : (j + 1) * n] for t, a in answers.items()}, chosen, spec, targets) for j in range(samples)
    ]
    baseline = {t: [a for a in free.get(t, [None] * samples) for _ in chosen] for t in checked}
    asked = sum(1 for t in checked for p in chosen if judge.backend != "simulated" or p.attitudes.get(t) is not None)
    return FidelityReport(
        judge=name,
        topics=checked,
        personas=n,
        asked=asked * samples,
        answered=sum(a is not None for said in answers.values() for a in said),
        no_answer=no_answer,
        personas_scores=averaged(per_draw),
        baseline=score(baseline, list(chosen) * samples, spec, targets),
        floor=score(floor, chosen, spec, targets),
        group_personas=_group_sizes(chosen),
        individual=_individual(answers, free, chosen, frame, spec, checked),
        samples=samples,
        temperature=sampling.temperature if sampling and samples > 1 else None,
        population=len(population.personas),
    )


def _answers(
    population: Population,
    chosen: Sequence[Persona],
    checked: Sequence[str],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None,
    stop_if_unreachable: bool,
    sampling: Sampling | None,
    floor: Answers,
) -> tuple[Answers, Answers, int, str, int]:
    """The personas' answers, the persona-free model's, how many questions got no answer, the judge's name and
    the answers drawn per question. The simulator answers from the true attitudes (``floor``), once."""
    if judge.backend == "simulated":
        free = {t: [a] for t, a in persona_free(population).attitudes.items()}
        return floor, free, 0, "simulated", 1
    answers, free, no_answer = llm_answers(
        population, chosen, checked, judge, seed, work, store, stop_if_unreachable, sampling
    )
    return answers, free, no_answer, f"{judge.backend}:{judge.model}", sampling.samples if sampling else 1


def _individual(
    answers: Answers,
    free: Answers,
    chosen: Sequence[Persona],
    frame: pl.DataFrame,
    spec: SurveySpec,
    checked: Sequence[str],
) -> Individual:
    """Each persona's most common answer against its own respondent's, beside the three guesses."""
    n = len(chosen)
    modal, free_modal = modal_answers(answers, n), modal_answers(free, 1)
    return Individual(
        personas=matches(modal, modal, chosen, spec),
        demographics=matches(demographic_answers(chosen, frame, spec, checked), modal, chosen, spec),
        persona_free=matches({t: a * n for t, a in free_modal.items()}, modal, chosen, spec),
        chance=chance(modal, chosen, spec),
    )


def _group_sizes(chosen: Sequence[Persona]) -> dict[str, int]:
    """Personas asked per group, by group name."""
    groups: dict[str, int] = {}
    for p in chosen:
        groups[p.group] = groups.get(p.group, 0) + 1
    return dict(sorted(groups.items()))
