"""A build's fidelity figures: saved with the build under a key of what they depend on, read back, and put in
words (terminal, card)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from polypref import prompts
from polypref.fidelity.questions import TEMPLATES, checked_topics
from polypref.fidelity.results import FidelityReport, Match, Matches, Score
from polypref.fidelity.sample import spread
from polypref.records import content_hash

if TYPE_CHECKING:
    from polypref.build.plan import BuildPlan
from polypref.build.fingerprint import code_digest, file_digest, input_files
from polypref.build.state import BuildState
from polypref.fidelity.sample import sampling

log = logging.getLogger("polypref.fidelity")


def report_key(plan: BuildPlan) -> str:
    """What the figures depend on: the judge and how it is asked (retries), the personas asked, the questions
    (topics, wording, options), the survey they are scored against, the question templates and the code."""
    fidelity, spec = plan.config.fidelity, plan.population.spec
    asked = [plan.persona_digests[i] for i in spread(plan.population.personas, plan.fidelity_personas())]
    # the whole population too: the sample's weights are scaled to its groups (poststratified)
    topics = checked_topics(spec, fidelity.topics)
    drawn = sampling(plan.config)
    return content_hash(
        plan.judge_key,
        getattr(plan.config.judge, "max_invalid_retries", None),
        *(() if drawn is None else (drawn.samples, drawn.temperature)),
        asked,
        plan.persona_digests,
        [(t, spec.question(t), spec.scale(t)) for t in topics],
        [file_digest(path) for path in input_files(plan.config, spec)],
        [prompts.template_hash(t, getattr(plan.config.judge, "templates", None)) for t in TEMPLATES],
        code_digest(("fidelity", "judges/options.py", "population/baseline.py")),
        size=16,
    )


def save(plan: BuildPlan, report: FidelityReport) -> None:
    """Keep the figures with the build (once the folder is prepared), for the card; figures with questions an
    endpoint left without an answer are shown as such, and the next run asks again (``for_build``)."""
    if report.no_answer:
        log.warning("fidelity: %d survey questions got no answer; the next run asks again", report.no_answer)
    plan.state.write_fidelity(report_key(plan), report.as_json())


def current_report(plan: BuildPlan) -> FidelityReport | None:
    """The figures saved for this build's judge and personas (None: not checked, or checked for another)."""
    if not plan.config.fidelity.check:
        return None
    return _report_of(plan.state.read_fidelity(report_key(plan)))


def saved_report(state: BuildState, key: str) -> FidelityReport | None:
    """The figures a build folder (``state``) saved under ``key``; None if none, or damaged."""
    return _report_of(state.read_fidelity(key))


def _report_of(saved: dict[str, Any] | None) -> FidelityReport | None:
    try:
        return None if saved is None else FidelityReport.from_json(saved)
    except (ValueError, KeyError, TypeError):
        return None  # damaged: ask again


def _of_population(report: FidelityReport) -> str:
    """ " of N" when the personas asked are a sample of the population's."""
    if report.population is None or report.personas >= report.population:
        return ""
    return f" of {report.population}"


def figures(score: Score) -> str:
    if score.tvd is None or score.alignment is None:
        return "no answers"
    return f"TVD {score.tvd:.3f}, alignment {score.alignment:.3f}"


def describe(report: FidelityReport) -> list[str]:
    """The figures in a few lines, for the terminal."""
    lines = [
        f"fidelity of {report.personas}{_of_population(report)} personas on {len(report.topics)} survey questions "
        f"({report.judge}; "
        + (f"{report.samples} draws a question; " if report.samples > 1 else "")
        + f"{report.answered} of {report.asked} answered with an option"
        + (f"; {report.no_answer} got no answer from the endpoint: run again to ask again" if report.no_answer else "")
        + ")",
        f"  personas:             {figures(report.personas_scores.overall)}",
        f"  persona-free model:   {figures(report.baseline.overall)}",
        f"  perfect role-play:    {figures(report.floor.overall)}  (the personas' own survey answers)",
    ]
    scored = [(g, s) for g, s in report.personas_scores.groups.items() if s.tvd is not None]
    if scored:
        worst = max(scored, key=lambda gs: gs[1].tvd or 0.0)
        lines.append(f"  furthest group: {worst[0]} ({figures(worst[1])}, {report.group_personas[worst[0]]} personas)")
    excess = report.excess_tvd
    if excess.overall is not None:
        over = [(g, e) for g, e in excess.groups.items() if e is not None and e > 0]
        largest = max(over, key=lambda ge: ge[1]) if over else None  # none: every group at its floor
        lines.append(
            f"  TVD above perfect role-play: {excess.overall:+.3f} overall"
            + (f"; largest in {largest[0]} ({largest[1]:+.3f})" if largest else "")
        )
    if report.individual is not None:
        lines.append(
            f"  each persona against its own respondent ({report.individual.personas.overall.questions} answers; "
            "share answered alike, mean ordinal distance 0-1):"
        )
        # the interval of the personas' own figure: what the sample of personas asked allows
        lines += [
            f"    {name + ':':<22}{_match(m.overall, with_interval=name == 'personas')}"
            for name, m in _individual_rows(report)
        ]
    return lines


INDIVIDUAL_NAMES = {
    "personas": "personas",
    "demographics": "demographics only",  # its group's most common answer among the other respondents
    "persona_free": "persona-free model",
    "chance": "nothing (random)",  # a uniformly random option
}


def _individual_rows(report: FidelityReport) -> list[tuple[str, Matches]]:
    individual = report.individual
    return [] if individual is None else [(n, getattr(individual, k)) for k, n in INDIVIDUAL_NAMES.items()]


def _match(match: Match, with_interval: bool = False) -> str:
    if match.exact is None or match.distance is None:
        return "no answers"
    interval = _interval(match) if with_interval else None
    return f"exact {match.exact:.3f}" + (f" (95% {interval})" if interval else "") + f", distance {match.distance:.3f}"


def markdown(report: FidelityReport) -> str:
    """The figures as a Prefect artifact."""
    rows = [
        ("personas", report.personas_scores.overall),
        ("persona-free model", report.baseline.overall),
        ("perfect role-play (floor)", report.floor.overall),
    ]
    table = "\n".join(f"| {name} | {_cell(s.tvd)} | {_cell(s.alignment)} |" for name, s in rows)
    text = (
        f"# Persona fidelity ({report.judge})\n\n{report.personas} personas, {len(report.topics)} survey questions, "
        f"{report.answered} of {report.asked} answered with an option.\n\n"
        f"| answers of | TVD (lower is better) | alignment (higher is better) |\n|---|---|---|\n{table}\n"
    )
    if report.excess_tvd.overall is not None:
        text += f"\nTVD above perfect role-play (the excess): {report.excess_tvd.overall:+.3f}.\n"
    if report.individual is not None:
        named = _individual_rows(report)
        matches = "\n".join(f"| {name} | {_cell(m.overall.exact)} | {_cell(m.overall.distance)} |" for name, m in named)
        text += (
            "\n## Each persona against its own respondent\n\n"
            "| answers of | exact match (higher is better) | ordinal distance (lower is better) |\n"
            f"|---|---|---|\n{matches}\n"
        )
    return text


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _match_cells(match: Match) -> dict[str, str]:
    return {"exact": _cell(match.exact), "distance": _cell(match.distance), "interval": _interval(match)}


def _interval(match: Match) -> str | None:
    """The 95% interval of the exact-match share that the personas asked allow, in words (None: not known)."""
    if match.exact_low is None or match.exact_high is None:
        return None
    return f"{match.exact_low:.3f}-{match.exact_high:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def as_card(report: FidelityReport | None) -> dict[str, Any] | None:
    """What the dataset card shows: the figures and every group's, with its persona count and its excess over
    the floor; each persona against its own respondent when the report has it (None: saved before it was kept)."""
    if report is None:
        return None
    excess, individual = report.excess_tvd, report.individual
    none = Match(None, None)
    groups = [
        {
            "group": g,
            "personas": report.group_personas.get(g, 0),
            "tvd": _cell(s.tvd),
            "alignment": _cell(s.alignment),
            "baseline_tvd": _cell(report.baseline.groups.get(g, Score(None, None)).tvd),
            "floor_tvd": _cell(report.floor.groups.get(g, Score(None, None)).tvd),
            "excess_tvd": _signed(excess.groups.get(g)),
            "exact": _cell((individual.personas.groups.get(g, none) if individual else none).exact),
            "demographics_exact": _cell((individual.demographics.groups.get(g, none) if individual else none).exact),
        }
        for g, s in report.personas_scores.groups.items()
    ]
    overall = {
        name: {"tvd": _cell(s.tvd), "alignment": _cell(s.alignment)}
        for name, s in (
            ("personas", report.personas_scores.overall),
            ("baseline", report.baseline.overall),
            ("floor", report.floor.overall),
        )
    }
    return {
        "judge": report.judge,
        "personas": report.personas,
        "population": report.population,
        "samples": report.samples,
        "temperature": report.temperature,
        "topics": len(report.topics),
        "asked": report.asked,
        "answered": report.answered,
        "no_answer": report.no_answer,
        "overall": overall,
        "excess_tvd": _signed(excess.overall),
        "individual": None
        if individual is None
        else {
            "questions": individual.personas.overall.questions,
            **{kind: _match_cells(getattr(individual, kind).overall) for kind in individual.KINDS},
        },
        "groups": groups,
    }
