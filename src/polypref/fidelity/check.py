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

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from polypref import progress, prompts
from polypref.config import BuildConfig
from polypref.errors import ConfigError, EndpointUnreachable
from polypref.fidelity.metrics import alignment, distribution, tvd
from polypref.fidelity.store import AnswerStore
from polypref.generation.annotate import annotator
from polypref.generation.run import open_backend
from polypref.judges.options import ask_options
from polypref.population.baseline import persona_free
from polypref.population.sample import Population
from polypref.population.spec import SurveySpec
from polypref.records import Persona

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
class Match:
    """Answers held against each persona's own respondent's, over the questions the persona answered (and its
    respondent did), weighted as the distributions are: ``exact`` the share given the respondent's very option,
    ``distance`` the mean |option difference| / (k - 1) on the ordinal scale (0: the same, 1: opposite ends)."""

    exact: float | None  # None: no question to score
    distance: float | None
    questions: int = 0  # answers scored (questions x samples)
    # 95% interval of ``exact`` that the sample of personas allows (personas as clusters of their answers;
    # None: fewer than 2 personas, or a report saved before it was kept)
    exact_low: float | None = None
    exact_high: float | None = None


@dataclass(frozen=True)
class Matches:
    overall: Match
    groups: dict[str, Match]

    def as_json(self) -> dict[str, Any]:
        return {"overall": asdict(self.overall), "groups": {g: asdict(m) for g, m in self.groups.items()}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Matches:
        return Matches(Match(**data["overall"]), {g: Match(**m) for g, m in data["groups"].items()})


@dataclass(frozen=True)
class Individual:
    """Each persona's answer against its own respondent's, and three guesses scored on the same questions: what
    demographics alone predict (the group's most common answer among other respondents), the persona-free model's
    one answer per topic, and a uniformly random option (knowing nothing). Role-play that reads people, not just
    groups, beats the demographics-only guess."""

    personas: Matches
    demographics: Matches
    persona_free: Matches
    chance: Matches

    KINDS: ClassVar[tuple[str, ...]] = ("personas", "demographics", "persona_free", "chance")

    def as_json(self) -> dict[str, Any]:
        return {kind: getattr(self, kind).as_json() for kind in self.KINDS}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Individual:
        return Individual(**{kind: Matches.from_json(data[kind]) for kind in Individual.KINDS})


@dataclass(frozen=True)
class Excess:
    """The personas' TVD minus their floor's, overall and per group: the distance role-play adds on top of the
    sampling noise a perfect role-player would show (None where either figure is missing)."""

    overall: float | None
    groups: dict[str, float | None]


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
    individual: Individual | None = None  # None: a report saved before individual figures were kept
    samples: int = 1  # answers drawn per question (the persona-free model's too)
    temperature: float | None = None  # ... at this temperature (None: one greedy answer)
    population: int | None = None  # personas in the population the asked ones were spread over (None: older report)

    @property
    def excess_tvd(self) -> Excess:
        return excess_tvd(self.personas_scores, self.floor)

    def as_json(self) -> dict[str, Any]:
        """The figures as ``polypref fidelity --json`` writes them (personas' scores at the top level; the excess
        is derived, written for readers and not read back)."""
        excess = self.excess_tvd
        return {
            **self.personas_scores.as_json(),
            "baseline": self.baseline.as_json(),
            "floor": self.floor.as_json(),
            "excess_tvd": {"overall": excess.overall, "groups": excess.groups},
            **({"individual": self.individual.as_json()} if self.individual is not None else {}),
            "counts": {
                "judge": self.judge,
                "topics": list(self.topics),
                "personas": self.personas,
                "asked": self.asked,
                "answered": self.answered,
                "no_answer": self.no_answer,
                "group_personas": self.group_personas,
                "samples": self.samples,
                "temperature": self.temperature,
                "population": self.population,
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
            individual=Individual.from_json(data["individual"]) if data.get("individual") else None,
            samples=counts.get("samples", 1),
            temperature=counts.get("temperature"),
            population=counts.get("population"),
        )


def excess_tvd(personas: Scores, floor: Scores) -> Excess:
    def minus(a: Score | None, b: Score | None) -> float | None:
        if a is None or b is None or a.tvd is None or b.tvd is None:
            return None
        return round(a.tvd - b.tvd, 6)

    return Excess(
        minus(personas.overall, floor.overall), {g: minus(s, floor.groups.get(g)) for g, s in personas.groups.items()}
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


def matches(
    guesses: dict[str, list[str | None]],
    answers: dict[str, list[str | None]],
    personas: Sequence[Persona],
    spec: SurveySpec,
) -> Matches:
    """``guesses`` (topic -> one per persona) against each persona's own survey answer, on the questions the
    personas answered (``answers``) and their respondents did; a question with no guess is left out of it."""
    parts = []
    for topic, said in answers.items():
        scale = spec.scale(topic)
        own = option_numbers([p.attitudes.get(topic) for p in personas], scale)
        guess = option_numbers(guesses[topic], scale)
        scored = (option_numbers(said, scale) >= 0) & (own >= 0) & (guess >= 0)
        parts.append((scored, (guess == own).astype(np.float64), np.abs(guess - own) / max(len(scale) - 1, 1)))
    return _tally(parts, personas)


def chance(answers: dict[str, list[str | None]], personas: Sequence[Persona], spec: SurveySpec) -> Matches:
    """What a uniformly random option scores on the same questions: exact 1/k, and the mean distance from the
    respondent's option to every option."""
    parts = []
    for topic, said in answers.items():
        k = len(spec.scale(topic))
        own = option_numbers([p.attitudes.get(topic) for p in personas], spec.scale(topic))
        scored = (option_numbers(said, spec.scale(topic)) >= 0) & (own >= 0)
        steps = np.abs(np.arange(k)[None, :] - own[:, None]).sum(axis=1) / (k * max(k - 1, 1))
        parts.append((scored, np.full(len(personas), 1.0 / k), steps))
    return _tally(parts, personas)


def _tally(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], personas: Sequence[Persona]) -> Matches:
    """Weighted means of (scored, exact, distance) per question, overall and per group (one array per topic)."""
    n = len(parts)
    groups = np.tile(np.array([p.group for p in personas]), n)
    # personas drawn from one respondent answer alike: one cluster, however many were drawn
    clusters = np.unique(np.tile(np.array([p.respondent_id for p in personas]), n), return_inverse=True)[1]
    weights = np.tile(np.array([p.weight for p in personas], dtype=np.float64), n)
    scored = np.concatenate([s for s, _, _ in parts]) if parts else np.zeros(0, dtype=bool)
    exact = np.concatenate([e for _, e, _ in parts]) if parts else np.zeros(0)
    distance = np.concatenate([d for _, _, d in parts]) if parts else np.zeros(0)

    def mean(rows: np.ndarray) -> Match:
        w = np.where(rows, weights, 0.0)
        total, count = float(w.sum()), int(rows.sum())
        if not count or total <= 0:
            return Match(None, None, count)
        share = float(w @ exact) / total
        low, high = _cluster_interval(share, w, exact, clusters)
        return Match(round(share, 6), round(float(w @ distance) / total, 6), count, low, high)

    names = sorted({p.group for p in personas})
    return Matches(mean(scored), {g: mean(scored & (groups == g)) for g in names})


def _cluster_interval(
    share: float, weights: np.ndarray, values: np.ndarray, clusters: np.ndarray
) -> tuple[float | None, float | None]:
    """A 95% interval for a weighted share whose rows come in clusters (a persona's answers are not independent
    of each other; the personas asked are the sample): the ratio estimator's linearized variance, with Student's
    t on m - 1 degrees of freedom (a normal 1.96 covers 80% at 3 personas)."""
    if not len(weights):
        return None, None
    w = np.bincount(clusters, weights=weights)
    residual = np.bincount(clusters, weights=weights * (values - share))
    used = w > 0
    m = int(used.sum())
    if m < 2:
        return None, None
    se = math.sqrt(m / (m - 1) * float((residual[used] ** 2).sum())) / float(w.sum())
    t = t_975(m - 1)
    return round(max(0.0, share - t * se), 6), round(min(1.0, share + t * se), 6)


# Student's t 0.975 quantiles for 1-30 degrees of freedom; past 30, the Cornish-Fisher expansion (within 0.001)
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
_T_975 += (2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(df: int) -> float:
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


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


def modal_answers(draws: dict[str, list[str | None]], n: int) -> dict[str, list[str | None]]:
    """Each persona's most common answer over its draws (draw-major rows, ``n`` personas; ties: the answer
    drawn first), None where no draw named an option: the persona's one best guess, compared like for like
    with the demographics-only guess, itself a most common answer."""
    samples = len(next(iter(draws.values()), [])) // max(n, 1)
    modal: dict[str, list[str | None]] = {}
    for topic, said in draws.items():
        modal[topic] = []
        for i in range(n):
            counts = Counter(a for a in (said[j * n + i] for j in range(samples)) if a is not None)
            modal[topic].append(counts.most_common(1)[0][0] if counts else None)
    return modal


def demographic_answers(
    personas: Sequence[Persona], frame: pl.DataFrame, spec: SurveySpec, topics: Sequence[str]
) -> dict[str, list[str | None]]:
    """What demographics alone predict each persona answers: its group's most common answer in the survey
    (``frame``, the respondents the population was drawn from, weighted), its own respondent left out (it knows
    the answer); ties go to the earlier option. Where no other respondent of the group answered, the whole
    survey's most common answer, the respondent still left out. The survey, not the other personas: a group of a
    few personas guesses its group's answer far worse than the thousands of respondents behind it."""
    respondent = {r: i for i, r in enumerate(frame["respondent_id"].to_list())}
    groups = frame["group"].to_numpy()
    weights = frame["weight"].to_numpy().astype(np.float64)
    guesses: dict[str, list[str | None]] = {}
    for topic in topics:
        scale = spec.scale(topic)
        options = option_numbers(frame[f"v:{topic}"].to_list(), scale)
        answered = options >= 0
        overall = np.bincount(options[answered], weights=weights[answered], minlength=len(scale))
        mass = {
            g: np.bincount(options[rows], weights=weights[rows], minlength=len(scale))
            for g in np.unique(groups)
            for rows in [answered & (groups == g)]
        }
        said: list[str | None] = []
        for p in personas:
            own = respondent.get(p.respondent_id)
            others = mass.get(p.group, np.zeros(len(scale))).copy()
            everyone = overall.copy()
            if own is not None and options[own] >= 0:  # its own answer left out of both
                others[options[own]] -= weights[own]
                everyone[options[own]] -= weights[own]
            best = others if others.sum() > 1e-12 else everyone
            # rounded: a weight taken off must not leave float noise to break a tie against the earlier option
            said.append(scale[int(np.argmax(np.round(best, 9)))] if best.sum() > 1e-12 else None)
        guesses[topic] = said
    return guesses


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
    sampling: Sampling | None = None,
) -> tuple[dict[str, list[str | None]], dict[str, list[str | None]], int]:
    """Every persona's answers to every topic's question (its own answer held out of the portrayal), the
    persona-free answers, and how many questions got no answer at all; through the judge's model as a free-text
    backend. Each question is asked ``sampling.samples`` times at its temperature (None: once, greedily): a
    topic's answers are draw-major (draw j of persona i at ``j * len(personas) + i``), the persona-free model's
    one per draw. See ``ask`` for ``store`` and ``stop_if_unreachable``."""
    spec = population.spec
    portray = population.portrayer(hold_out=True)
    asks = [(t, p) for t in topics for p in personas]
    templates = getattr(judge, "templates", None)
    # once per topic, not per persona (before the first request)
    text = {t: question_text(spec, t, templates) for t in topics}
    once = [question_messages(text[t], portray(p, t).text, templates) for t, p in asks]
    once += [question_messages(text[t], None, templates) for t in topics]
    scales = [spec.scale(t) for t, _ in asks] + [spec.scale(t) for t in topics]
    samples = sampling.samples if sampling else 1
    draws = [j for j in range(samples) for _ in once]
    got, no_answer = ask(
        once * samples, scales * samples, judge, seed, work, store, stop_if_unreachable, draws, sampling
    )
    answers: dict[str, list[str | None]] = {t: [] for t in topics}
    free: dict[str, list[str | None]] = {t: [] for t in topics}
    for j in range(samples):
        drawn = got[j * len(once) : (j + 1) * len(once)]
        for (topic, _), answer in zip(asks, drawn, strict=False):
            answers[topic].append(answer)
        for topic, answer in zip(topics, drawn[len(asks) :], strict=True):
            free[topic].append(answer)
    return answers, free, no_answer


@dataclass(frozen=True)
class Sampling:
    """How the check draws several answers per question: ``samples`` draws at ``temperature``."""

    samples: int
    temperature: float


def ask(
    questions: Sequence[list[dict[str, str]]],
    options: Sequence[Sequence[str]],
    judge: Any,
    seed: int,
    work: Path,
    store: AnswerStore | None = None,
    stop_if_unreachable: bool = True,
    draws: Sequence[int] | None = None,
    sampling: Sampling | None = None,
) -> tuple[list[str | None], int]:
    """Each question's option (None: none named) and how many got no answer at all. With a ``store``, saved
    answers are taken and only the other questions asked, micro-batch by micro-batch, each micro-batch saved as
    it arrives with what it cost (a stop between them loses none). An endpoint that cannot be reached stops the
    caller (``EndpointUnreachable``), or with ``stop_if_unreachable`` off leaves every question unanswered.
    ``draws``: each question's sample number (repeated samples of one question); ``sampling``: asked at its
    temperature (None: greedily)."""
    keys = AnswerStore.keys(questions, options, draws)
    saved = store.lookup(keys) if store is not None else {}
    got: list[str | None] = [saved.get(i) for i in range(len(questions))]
    todo = [i for i in range(len(questions)) if i not in saved]
    progress.expect(progress.FIDELITY, len(questions))
    progress.advance(progress.FIDELITY, len(saved))
    if saved:
        log.info("fidelity: %d of %d survey questions answered before; asking %d", len(saved), len(got), len(todo))
    if not todo:
        return got, 0
    no_answer = 0
    config = annotator(judge)
    if sampling is not None:
        config = config.model_copy(update={"temperature": sampling.temperature})
    backend = open_backend(config, 0, seed, work, section="judge")
    try:
        for start in range(0, len(todo), backend.config.micro_batch):
            chunk = todo[start : start + backend.config.micro_batch]
            said = ask_options(
                backend,
                [questions[i] for i in chunk],
                [options[i] for i in chunk],
                seed,
                "fidelity",
                [draws[i] for i in chunk] if draws else None,
            )
            for i, answer in zip(chunk, said.options, strict=True):
                got[i] = answer
            no_answer += said.no_answer
            progress.advance(progress.FIDELITY, len(chunk))
            if store is not None:
                # an option, or (when every request was answered) no option named; never a question left unanswered
                kept = [j for j, a in enumerate(said.options) if a is not None or not said.no_answer]
                store.save(keys[[chunk[j] for j in kept]], [said.options[j] for j in kept], said.spent(kept))
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
    if judge.backend == "simulated":  # the simulator answers from the true attitudes
        answers, no_answer, samples = floor, 0, 1
        free = {t: [a] for t, a in persona_free(population).attitudes.items()}
        name = "simulated"
    else:
        answers, free, no_answer = llm_answers(
            population, chosen, checked, judge, seed, work, store, stop_if_unreachable, sampling
        )
        name, samples = f"{judge.backend}:{judge.model}", sampling.samples if sampling else 1
    n = len(chosen)
    per_draw = [
        score({t: a[j * n : (j + 1) * n] for t, a in answers.items()}, chosen, spec, targets) for j in range(samples)
    ]
    baseline = {t: [a for a in free.get(t, [None] * samples) for _ in chosen] for t in checked}
    modal, free_modal = modal_answers(answers, n), modal_answers(free, 1)
    individual = Individual(
        personas=matches(modal, modal, chosen, spec),
        demographics=matches(demographic_answers(chosen, frame, spec, checked), modal, chosen, spec),
        persona_free=matches({t: a * n for t, a in free_modal.items()}, modal, chosen, spec),
        chance=chance(modal, chosen, spec),
    )
    asked = sum(1 for t in checked for p in chosen if judge.backend != "simulated" or p.attitudes.get(t) is not None)
    groups: dict[str, int] = {}
    for p in chosen:
        groups[p.group] = groups.get(p.group, 0) + 1
    return FidelityReport(
        judge=name,
        topics=checked,
        personas=n,
        asked=asked * samples,
        answered=sum(a is not None for said in answers.values() for a in said),
        no_answer=no_answer,
        personas_scores=_averaged(per_draw),
        baseline=score(baseline, list(chosen) * samples, spec, targets),
        floor=score(floor, chosen, spec, targets),
        group_personas=dict(sorted(groups.items())),
        individual=individual,
        samples=samples,
        temperature=sampling.temperature if sampling and samples > 1 else None,
        population=len(population.personas),
    )


def _averaged(scores: Sequence[Scores]) -> Scores:
    """Per-draw figures averaged, overall and per group (a draw without a figure left out)."""

    def mean(figures: list[Score]) -> Score:
        known = [(f.tvd, f.alignment) for f in figures if f.tvd is not None and f.alignment is not None]
        return _mean(known)  # type: ignore[arg-type]

    groups = scores[0].groups if scores else {}
    return Scores(mean([s.overall for s in scores]), {g: mean([s.groups[g] for s in scores]) for g in groups})


def check_topics(config: BuildConfig, spec: SurveySpec, source: str) -> None:
    unknown = sorted(set(config.fidelity.topics or ()) - set(spec.attitudes.items))
    if unknown:
        raise ConfigError(
            source, [("fidelity.topics", f"unknown topics {unknown}; the spec's: {sorted(spec.attitudes.items)}")]
        )


def sampling(config: BuildConfig) -> Sampling | None:
    """How the check draws answers: ``fidelity.samples`` draws at its temperature (None: once, greedily, as one
    sample asks; the simulator answers from the true attitudes)."""
    fidelity = config.fidelity
    if config.judge.backend == "simulated" or fidelity.samples == 1:
        return None
    return Sampling(fidelity.samples, fidelity.temperature)
