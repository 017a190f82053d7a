"""The fidelity check: do the personas answer the survey's own questions the way the people they stand for did?

Each persona is asked each checked attitude question with the survey's answer options, its own answer to that
question held out of its portrayal. Per social group, and for the whole population (personas weighted by their
post-stratification weight), the answer distribution is compared with the survey's weighted distribution of
the same question: total variation distance, and OpinionQA's alignment (1 - normalised Wasserstein distance on
the ordinal scale). Each figure is the mean over the checked questions.

Two references come with the personas' figures. ``baseline``: the same judge asked without a persona (the gain
from role-play is the difference). ``floor``: the personas' own survey answers scored the same way, which is
what a perfect role-player would score: a group of 8 personas cannot match its survey distribution closer than
sampling lets it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from polypref import progress, prompts
from polypref.fidelity.metrics import alignment, distribution, tvd
from polypref.population.baseline import persona_free
from polypref.population.sample import Population
from polypref.population.spec import SurveySpec
from polypref.records import Persona

if TYPE_CHECKING:
    from polypref.fidelity.store import AnswerStore

log = logging.getLogger("polypref.fidelity")

SYSTEM_TEMPLATE = "survey_system.j2"
QUESTION_TEMPLATE = "survey_question.j2"
TEMPLATES = (SYSTEM_TEMPLATE, QUESTION_TEMPLATE)


@dataclass(frozen=True)
class Score:
    tvd: float | None  # None: no answers to compare (every request failed, or a group nobody answered for)
    alignment: float | None


@dataclass(frozen=True)
class Scores:
    overall: Score
    groups: dict[str, Score]

    def as_json(self) -> dict[str, Any]:
        return {"overall": asdict(self.overall), "groups": {g: asdict(s) for g, s in self.groups.items()}}


@dataclass(frozen=True)
class FidelityReport:
    judge: str  # backend and model that answered
    topics: tuple[str, ...]
    personas: int
    asked: int  # questions put to personas (the persona-free baseline's come on top)
    answered: int  # ... answered with one of the options; the rest are counted, not scored
    no_answer: int  # questions (baseline's included) whose requests got no answer at all: asked again next time
    personas_scores: Scores
    baseline: Scores  # the same judge without a persona
    floor: Scores  # the personas' own survey answers: what a perfect role-player scores
    group_personas: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The figures as ``polypref fidelity --json`` writes them (personas' scores at the top level)."""
        return {
            **self.personas_scores.as_json(),
            "baseline": self.baseline.as_json(),
            "floor": self.floor.as_json(),
            "counts": {
                "judge": self.judge,
                "topics": list(self.topics),
                "personas": self.personas,
                "asked": self.asked,
                "answered": self.answered,
                "no_answer": self.no_answer,
                "group_personas": self.group_personas,
            },
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> FidelityReport:
        def scores(d: dict[str, Any]) -> Scores:
            return Scores(Score(**d["overall"]), {g: Score(**s) for g, s in d["groups"].items()})

        counts = data["counts"]
        return FidelityReport(
            judge=counts["judge"],
            topics=tuple(counts["topics"]),
            personas=counts["personas"],
            asked=counts["asked"],
            answered=counts["answered"],
            no_answer=counts.get("no_answer", 0),
            personas_scores=scores(data),
            baseline=scores(data["baseline"]),
            floor=scores(data["floor"]),
            group_personas=counts["group_personas"],
        )


def checked_topics(spec: SurveySpec, topics: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(topics) if topics else tuple(spec.attitudes.items)


def survey_targets(frame: pl.DataFrame, spec: SurveySpec, topics: Sequence[str]) -> dict[str, dict[str | None, Any]]:
    """Per topic, the survey's weighted answer distribution per group and (key None) over everyone."""
    targets: dict[str, dict[str | None, Any]] = {}
    groups = frame["group"].to_numpy()
    weights = frame["weight"].to_numpy().astype(np.float64)
    for topic in topics:
        scale = spec.scale(topic)
        options = option_numbers(frame[f"v:{topic}"].to_list(), scale)
        per: dict[str | None, Any] = {None: distribution(options, weights, len(scale))}
        for group in np.unique(groups):
            rows = groups == group
            per[str(group)] = distribution(options[rows], weights[rows], len(scale))
        targets[topic] = per
    return targets


def option_numbers(answers: Sequence[str | None], scale: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(scale)}
    return np.array([index.get(a, -1) if a is not None else -1 for a in answers], dtype=np.int64)


def score(
    answers: dict[str, list[str | None]],
    personas: Sequence[Persona],
    spec: SurveySpec,
    targets: dict[str, dict[str | None, Any]],
) -> Scores:
    """Personas' answers (topic -> one answer per persona, None = unanswered) against the survey's targets."""
    weights = np.array([p.weight for p in personas], dtype=np.float64)
    groups = np.array([p.group for p in personas])
    overall: list[tuple[float, float]] = []
    per_group: dict[str, list[tuple[float, float]]] = {str(g): [] for g in np.unique(groups)}
    for topic, said in answers.items():
        scale = spec.scale(topic)
        options = option_numbers(said, scale)
        p = distribution(options, weights, len(scale))
        q = targets[topic][None]
        if p is not None and q is not None:
            overall.append((tvd(p, q), alignment(p, q)))
        for group, figures in per_group.items():
            rows = groups == group
            # weighted within the group too: equal weights in a full build, cluster sizes for representatives
            p, q = distribution(options[rows], weights[rows], len(scale)), targets[topic].get(group)
            if p is not None and q is not None:
                figures.append((tvd(p, q), alignment(p, q)))
    return Scores(_mean(overall), {g: _mean(f) for g, f in sorted(per_group.items())})


def _mean(figures: list[tuple[float, float]]) -> Score:
    if not figures:
        return Score(None, None)
    return Score(*(round(math.fsum(f[i] for f in figures) / len(figures), 6) for i in range(2)))


def own_answers(personas: Sequence[Persona], topics: Sequence[str]) -> dict[str, list[str | None]]:
    """Each persona's own survey answer: what the simulator says, and the floor every judge is scored against."""
    return {t: [p.attitudes.get(t) for p in personas] for t in topics}


def question_text(spec: SurveySpec, topic: str, templates: str | None = None) -> str:
    """A topic's survey question and its options, as the user message asks them (``templates``: the user's
    folder, judge.templates, whose survey_question.j2 replaces the shipped one)."""
    template = prompts.template(QUESTION_TEMPLATE, templates)
    return template.render(question=spec.question(topic), options=spec.scale(topic))


def question_messages(question: str, portrayal: str | None, templates: str | None = None) -> list[dict[str, str]]:
    """The chat request for one survey question (``question_text``): a system message with the persona (none for
    the persona-free baseline), then the question and its options."""
    messages = [{"role": "user", "content": question}]
    if portrayal:
        system = prompts.template(SYSTEM_TEMPLATE, templates).render(persona=portrayal)
        messages.insert(0, {"role": "system", "content": system})
    return messages


def llm_answers(
    population: Population,
    personas: Sequence[Persona],
    topics: Sequence[str],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
) -> tuple[dict[str, list[str | None]], dict[str, str | None], int]:
    """Every persona's answer to every topic's question (its own answer held out of the portrayal), and the
    persona-free answers, and how many questions got no answer at all; through the judge's model as a free-text
    backend answering greedily. See ``ask`` for ``store`` and ``stop_if_unreachable``."""
    spec = population.spec
    portray = population.portrayer(hold_out=True)
    asks = [(t, p) for t in topics for p in personas]
    templates = getattr(judge, "templates", None)
    # once per topic, not per persona (before the first request)
    text = {t: question_text(spec, t, templates) for t in topics}
    questions = [question_messages(text[t], portray(p, t).text, templates) for t, p in asks]
    questions += [question_messages(text[t], None, templates) for t in topics]
    options = [spec.scale(t) for t, _ in asks] + [spec.scale(t) for t in topics]
    got, no_answer = ask(questions, options, judge, seed, work, store, stop_if_unreachable)
    answers: dict[str, list[str | None]] = {t: [] for t in topics}
    for (topic, _), answer in zip(asks, got, strict=False):
        answers[topic].append(answer)
    return answers, dict(zip(topics, got[len(asks) :], strict=True)), no_answer


def ask(
    questions: Sequence[list[dict[str, str]]],
    options: Sequence[Sequence[str]],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
) -> tuple[list[str | None], int]:
    """Each question's option (None: none named) and how many got no answer at all. With a ``store``, saved
    answers are taken and only the other questions asked, micro-batch by micro-batch, each micro-batch saved as
    it arrives (a stop between them loses none). An endpoint that cannot be reached stops the caller
    (``EndpointUnreachable``), or with ``stop_if_unreachable`` off leaves every question unanswered."""
    from polypref.annotate import annotator
    from polypref.errors import EndpointUnreachable
    from polypref.generation.run import open_backend
    from polypref.judges.options import ask_options

    keys = store.keys(questions, options) if store is not None else None
    saved = store.lookup(keys) if store is not None and keys is not None else {}
    got: list[str | None] = [saved.get(i) for i in range(len(questions))]
    todo = [i for i in range(len(questions)) if i not in saved]
    progress.expect(progress.FIDELITY, len(questions))
    progress.advance(progress.FIDELITY, len(saved))
    if saved:
        log.info("fidelity: %d of %d survey questions answered before; asking %d", len(saved), len(got), len(todo))
    if not todo:
        return got, 0
    no_answer = 0
    backend = open_backend(annotator(judge), 0, seed, work, section="judge")
    try:
        for start in range(0, len(todo), backend.config.micro_batch):
            chunk = todo[start : start + backend.config.micro_batch]
            said = ask_options(backend, [questions[i] for i in chunk], [options[i] for i in chunk], seed, "fidelity")
            for i, answer in zip(chunk, said.options, strict=True):
                got[i] = answer
            no_answer += said.no_answer
            progress.advance(progress.FIDELITY, len(chunk))
            if store is not None and keys is not None:
                # an option, or (when every request was answered) no option named; never a question left unanswered
                kept = [j for j, a in enumerate(said.options) if a is not None or not said.no_answer]
                store.save(keys[[chunk[j] for j in kept]], [said.options[j] for j in kept])
    except EndpointUnreachable as e:
        if stop_if_unreachable:
            raise
        log.error("fidelity: %s", e)
        return got, no_answer + sum(1 for i in todo if got[i] is None)
    finally:
        backend.close()
    return got, no_answer


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
) -> FidelityReport:
    """Ask, score and compare. ``frame`` is the survey's respondents (population.survey.respondents) the
    population was drawn from; ``judge`` the build's judge config; ``personas`` the first n personas only;
    ``store`` and ``stop_if_unreachable`` as ``ask`` takes them."""
    spec = population.spec
    chosen = population.personas[:personas] if personas else population.personas
    checked = checked_topics(spec, topics)
    targets = survey_targets(frame, spec, checked)
    floor = own_answers(chosen, checked)
    if judge.backend == "simulated":  # the simulator answers from the true attitudes
        answers, free, no_answer = floor, persona_free(population).attitudes, 0
        name = "simulated"
    else:
        answers, free, no_answer = llm_answers(
            population, chosen, checked, judge, seed, work, store, stop_if_unreachable
        )
        name = f"{judge.backend}:{judge.model}"
    baseline = {t: [free.get(t)] * len(chosen) for t in checked}
    asked = sum(1 for t in checked for p in chosen if judge.backend != "simulated" or p.attitudes.get(t) is not None)
    groups: dict[str, int] = {}
    for p in chosen:
        groups[p.group] = groups.get(p.group, 0) + 1
    return FidelityReport(
        judge=name,
        topics=checked,
        personas=len(chosen),
        asked=asked,
        answered=sum(a is not None for said in answers.values() for a in said),
        no_answer=no_answer,
        personas_scores=score(answers, chosen, spec, targets),
        baseline=score(baseline, chosen, spec, targets),
        floor=score(floor, chosen, spec, targets),
        group_personas=dict(sorted(groups.items())),
    )
