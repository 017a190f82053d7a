"""Scoring the fidelity check's answers: against the survey's weighted distributions per group and overall (TVD
and alignment, averaged over draws), and each persona's answer against its own respondent's (exact match and
ordinal distance, with a 95% interval over personas as clusters), beside the guesses it is compared with (the
group's most common answer, a uniformly random option)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from polypref.fidelity.metrics import alignment, distribution, tvd
from polypref.fidelity.results import Match, Matches, Score, Scores
from polypref.population.spec import SurveySpec
from polypref.records import Persona


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


def averaged(scores: Sequence[Scores]) -> Scores:
    """Per-draw figures averaged, overall and per group (a draw without a figure left out)."""

    def mean(figures: list[Score]) -> Score:
        known = [(f.tvd, f.alignment) for f in figures if f.tvd is not None and f.alignment is not None]
        return _mean(known)  # type: ignore[arg-type]

    groups = scores[0].groups if scores else {}
    return Scores(mean([s.overall for s in scores]), {g: mean([s.groups[g] for s in scores]) for g in groups})


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
