"""The fidelity check as the build and ``polypref fidelity`` run it: inputs checked first, answers saved with the
build as they arrive (``fidelity.store``: a stopped build's rerun asks only what was not answered) and the figures
once all are in (a rerun of the same judge on the same personas asks nothing), the gate, and the figures in
words."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polypref import interrupt, prompts
from polypref.config import BuildConfig
from polypref.errors import ConfigError, OutputError, PolyprefError
from polypref.fidelity import store
from polypref.fidelity.check import (
    TEMPLATES,
    FidelityReport,
    Match,
    Matches,
    Sampling,
    Score,
    check,
    checked_topics,
    spread,
)
from polypref.fidelity.store import AnswerStore, settings_key
from polypref.judges.options import named_option
from polypref.population import load_spec, sample_population
from polypref.population.representatives import represent
from polypref.population.sample import Population
from polypref.population.spec import SurveySpec
from polypref.population.survey import respondents
from polypref.records import content_hash

if TYPE_CHECKING:
    from polypref.build_plan import BuildPlan

log = logging.getLogger("polypref.fidelity")

REPORT_FILE = "fidelity.json"  # in the build's state folder (.polypref/)
_head_starts: dict[tuple[Path, str], Future[FidelityReport]] = {}  # (state folder, report key): head_start's check
HEAD_START_THREAD = "polypref-fidelity-head-start"
CALL_OFF_WAIT_S = 15.0  # a micro-batch normally ends in seconds; a dead endpoint's retries would take many minutes


class FidelityGateError(PolyprefError):
    """The personas scored worse than the configured threshold: the build stopped before judging."""


def check_topics(config: BuildConfig, spec: SurveySpec, source: str) -> None:
    unknown = sorted(set(config.fidelity.topics or ()) - set(spec.attitudes.items))
    if unknown:
        raise ConfigError(
            source, [("fidelity.topics", f"unknown topics {unknown}; the spec's: {sorted(spec.attitudes.items)}")]
        )


def standalone_population(config: BuildConfig, source: str) -> Population:
    """The personas a build with this config would judge, checked as the build checks them (items aside)."""
    from polypref.pipeline import check_before_work

    spec = load_spec(config.population.spec)
    check_before_work(config, spec, source)
    if config.judge.backend != "simulated":
        from polypref.annotate import annotator

        annotator(config.judge)  # the judge as a free-text backend: its settings checked before any request
    population = sample_population(
        spec, config.population.size, config.population.allocation, config.seed, source=source
    )
    k = config.population.representatives
    return population if k is None else represent(population, k, config.seed)


def run(population: Population, config: BuildConfig, work: Path) -> FidelityReport:
    """``polypref fidelity``: no build folder to save answers in; an endpoint that cannot be reached leaves every
    question unanswered (counted, exit 3) rather than stopping, as the figures' report says it."""
    fidelity = config.fidelity
    frame = respondents(population.spec).frame
    return check(
        population,
        frame,
        config.judge,
        config.seed,
        work,
        fidelity.topics,
        fidelity.personas,
        stop_if_unreachable=False,
        sampling=sampling(config),
    )


def sampling(config: BuildConfig) -> Sampling | None:
    """How the check draws answers: ``fidelity.samples`` draws at its temperature (None: once, greedily, as one
    sample asks; the simulator answers from the true attitudes)."""
    fidelity = config.fidelity
    if config.judge.backend == "simulated" or fidelity.samples == 1:
        return None
    return Sampling(fidelity.samples, fidelity.temperature)


def personas_asked(plan: BuildPlan) -> int | None:
    """How many personas a build's check asks (None: all): ``fidelity.personas``, else as many as
    ``fidelity.budget`` allows an LLM judge: every persona costs topics x samples requests and the persona-free
    model as much again once, against the budget's share of the planned judgments; at least one persona per
    group, so that every group has a figure (a budget too small for that is exceeded)."""
    fidelity = plan.config.fidelity
    if fidelity.personas is not None or plan.config.judge.backend == "simulated" or fidelity.budget is None:
        return fidelity.personas
    per_persona = len(checked_topics(plan.population.spec, fidelity.topics)) * fidelity.samples
    groups = len({p.group for p in plan.population.personas})
    return max(groups, int(fidelity.budget * plan.num_units) // per_persona - 1)


def report_key(plan: BuildPlan) -> str:
    """What the figures depend on: the judge and how it is asked (retries), the personas asked, the questions
    (topics, wording, options), the survey they are scored against, the question templates and the code."""
    from polypref.fingerprint import code_digest, file_digest, input_files

    fidelity, spec = plan.config.fidelity, plan.population.spec
    asked = [plan.persona_digests[i] for i in spread(plan.population.personas, personas_asked(plan))]
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


def for_build(plan: BuildPlan, reuse: bool = True) -> FidelityReport:
    """The build's figures: read back when this judge already answered these questions for these personas (and
    ``reuse``), else taken from this process's ``head_start`` of the same check, else asked."""
    key = report_key(plan)
    if reuse and (saved := _reusable(plan, key)) is not None:
        return saved
    if (early := _head_starts.pop((plan.state.root, key), None)) is not None:
        return early.result()  # its error is the check's error; a retry of the task then asks again itself
    return _ask(plan, reuse)


@contextlib.contextmanager
def head_start(plan: BuildPlan, reuse: bool = True) -> Iterator[None]:
    """Ask the build's fidelity questions now, on a thread of their own, while the block goes on (the CLI:
    while Prefect's server boots, seconds in which nothing else would be asked); the flow's check then takes
    these figures (``for_build``). Only for an OpenAI-compatible judge, whose check is time spent waiting on its
    endpoint (the simulator's is a moment of CPU, and a vLLM check loads an engine of its own that would compete
    with Prefect's start for the same cores); nothing is started either when the check is off, saved figures
    will do, or a stop was already requested. On leaving, a check the flow never took (it failed or stopped
    first) is called off, rather than pay for answers nobody will read: it stops once the micro-batch in flight
    is answered (retries included), which the block's end waits for up to CALL_OFF_WAIT_S; past that (an
    endpoint that does not answer) the daemon thread is left to the process's exit."""
    wanted = plan.config.fidelity.check and plan.config.judge.backend == "openai"
    key = report_key(plan) if wanted and not interrupt.stop_requested() else None
    if key is None or (reuse and _reusable(plan, key) is not None):
        yield
        return
    future: Future[FidelityReport] = Future()
    future.set_running_or_notify_cancel()
    called_off = threading.Event()

    def ask() -> None:
        try:
            with interrupt.stopped_by(called_off):
                future.set_result(_ask(plan, reuse))
        except BaseException as e:  # handed to whoever takes the figures
            future.set_exception(e)

    # a daemon thread: a second signal's os._exit must not wait for it
    threading.Thread(target=ask, name=HEAD_START_THREAD, daemon=True).start()
    _head_starts[(plan.state.root, key)] = future  # listed once its thread runs: none that failed to start is awaited
    try:
        yield
    finally:
        if _head_starts.pop((plan.state.root, key), None) is not None:  # not taken: the flow ended before its check
            called_off.set()
            if not futures.wait([future], timeout=CALL_OFF_WAIT_S).done:
                log.debug("fidelity: the head start's questions in flight are still unanswered; left to the exit")


def _reusable(plan: BuildPlan, key: str) -> FidelityReport | None:
    saved = _saved(plan.state.root / REPORT_FILE, key)
    return saved if saved is not None and not saved.no_answer else None  # figures with unanswered questions: ask


def _ask(plan: BuildPlan, reuse: bool = True) -> FidelityReport:
    """The build's check: answers saved in (and, with ``reuse``, taken from) the folder's answer store, the
    only thing written there before the folder is prepared."""
    config = plan.config
    store = _answers(plan, reuse)
    frame = respondents(plan.population.spec).frame
    with tempfile.TemporaryDirectory(prefix="polypref-fidelity-") as work:
        return check(
            plan.population,
            frame,
            config.judge,
            config.seed,
            Path(work),
            config.fidelity.topics,
            personas_asked(plan),
            store=store,
            sampling=sampling(config),
        )


def _answers(plan: BuildPlan, reuse: bool = True) -> AnswerStore:
    """The answer store of the plan's judge settings in its folder."""
    retries, drawn = getattr(plan.config.judge, "max_invalid_retries", None), sampling(plan.config)
    temperature = None if drawn is None else drawn.temperature
    # the code that reads an option off a reply, not all of judges/options.py: an edit elsewhere in that file
    # must not orphan every saved answer
    settings = settings_key(plan.judge_key, retries, content_hash(inspect.getsource(named_option)), temperature)
    return AnswerStore(plan.state.fidelity_dir, settings, reuse)


def saved_answers(plan: BuildPlan) -> int:
    """The fidelity questions the plan's judge has answered in its folder."""
    return _answers(plan).count()


def spent(plan: BuildPlan) -> dict[str, int | None]:
    """What the fidelity answers saved in the plan's folder cost, whichever judge settings asked them (a changed
    temperature or model paid too): requests and tokens (``store.spent``)."""
    return store.spent(plan.state.fidelity_dir)


def saved_summary(plan: BuildPlan) -> str:
    """What a build stopped in its folder has kept there for its own judge, in words for its stop message:
    judgments and the fidelity check's answers, counted, or that nothing was saved (a stop before any answer
    came, or the folder not made)."""
    out = plan.out
    try:
        judgments, answers = plan.store.count(), saved_answers(plan)
    except (OutputError, OSError):  # a stop message must not fail: it says where to look instead
        return f"what was saved is in {out}"
    counts = {f"{judgments} judgments": judgments, f"{answers} answers to the fidelity check's questions": answers}
    kept = [words for words, n in counts.items() if n]
    return f"{' and '.join(kept)} are saved in {out}" if kept else f"nothing was saved in {out} yet"


def save(plan: BuildPlan, report: FidelityReport) -> None:
    """Keep the figures with the build (once the folder is prepared), for the card; figures with questions an
    endpoint left without an answer are shown as such, and the next run asks again (``for_build``)."""
    if report.no_answer:
        log.warning("fidelity: %d survey questions got no answer; the next run asks again", report.no_answer)
    from polypref.dataset.writer import write_json

    write_json({"key": report_key(plan), "report": report.as_json()}, plan.state.root / REPORT_FILE)


def current_report(plan: BuildPlan) -> FidelityReport | None:
    """The figures saved for this build's judge and personas (None: not checked, or checked for another)."""
    if not plan.config.fidelity.check:
        return None
    return _saved(plan.state.root / REPORT_FILE, report_key(plan))


def _saved(path: Path, key: str) -> FidelityReport | None:
    try:
        saved = json.loads(path.read_text())
        return FidelityReport.from_json(saved["report"]) if saved.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or damaged: ask again


def gate(report: FidelityReport, config: BuildConfig, stopped: str = ", so the build stopped before judging") -> None:
    """Raise FidelityGateError, saying why and what to do, when the gate is on and the personas fall short."""
    fidelity = config.fidelity
    if not fidelity.gate:
        return
    overall, floor = report.personas_scores.overall, report.floor.overall
    excess, limit = report.excess_tvd, fidelity.max_excess_tvd  # the excess over the floor: what role-play adds
    # with an excess threshold, the raw TVD threshold is off: a raw TVD is mostly sampling noise at 200 personas
    max_tvd = fidelity.max_tvd if limit is None else 1.0
    references = f" (persona-free baseline: {_figures(report.baseline.overall)}; perfect role-play: {_figures(floor)})"
    too_few = (
        f"{report.personas} personas are too few for that threshold (sampling alone keeps them that far from the "
        "survey); ask more personas or relax the threshold"
    )
    if overall.tvd is None or overall.alignment is None:
        if report.no_answer:
            why = (
                f"the endpoint gave no answer to {report.no_answer} of the questions ({report.answered} of "
                f"{report.asked} answered){stopped}. Check that the judge's endpoint is up, then rerun"
            )
        else:
            why = (
                f"no persona answered with one of the options ({report.answered} of {report.asked} answered)"
                f"{stopped}. Use a judge model that follows the answer format, or set fidelity.gate: false"
            )
    elif floor.tvd is not None and floor.tvd > max_tvd:
        why = (
            f"even the personas' own survey answers score a total variation distance of {floor.tvd:.3f}, above "
            f"fidelity.max_tvd {fidelity.max_tvd}{stopped}: {too_few}{references}"
        )
    elif floor.alignment is not None and floor.alignment < fidelity.min_alignment:
        why = (
            f"even the personas' own survey answers score an alignment of {floor.alignment:.3f}, below "
            f"fidelity.min_alignment {fidelity.min_alignment}{stopped}: {too_few}{references}"
        )
    elif overall.tvd > max_tvd or overall.alignment < fidelity.min_alignment:
        figure = (
            f"total variation distance {overall.tvd:.3f} is above fidelity.max_tvd {fidelity.max_tvd}"
            if overall.tvd > max_tvd
            else f"alignment {overall.alignment:.3f} is below fidelity.min_alignment {fidelity.min_alignment}"
        )
        why = (
            f"{figure}{stopped}. The personas' answers to the survey's own questions differ from the survey's by "
            f"more than allowed{references}. Use a stronger judge model, or change fidelity.max_tvd / "
            "min_alignment, or set fidelity.gate: false"
        )
    elif limit is not None and excess.overall is not None and excess.overall > limit:
        past = sorted(((g, e) for g, e in excess.groups.items() if e is not None and e > limit), key=lambda ge: -ge[1])
        groups = ", ".join(f"{g} {e:+.3f}" for g, e in past) or "none on its own"
        why = (
            f"the personas' total variation distance is {excess.overall:.3f} above perfect role-play's, more than "
            f"fidelity.max_excess_tvd {limit}{stopped}: their answers differ from the survey's by more than "
            f"sampling explains (groups past it: {groups}){references}. Use a stronger judge model, or raise "
            "fidelity.max_excess_tvd, or set fidelity.gate: false"
        )
    else:
        return
    raise FidelityGateError(f"fidelity gate: {why}.")


def _of_population(report: FidelityReport) -> str:
    """ " of N" when the personas asked are a sample of the population's."""
    if report.population is None or report.personas >= report.population:
        return ""
    return f" of {report.population}"


def _figures(score: Score) -> str:
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
        f"  personas:             {_figures(report.personas_scores.overall)}",
        f"  persona-free model:   {_figures(report.baseline.overall)}",
        f"  perfect role-play:    {_figures(report.floor.overall)}  (the personas' own survey answers)",
    ]
    scored = [(g, s) for g, s in report.personas_scores.groups.items() if s.tvd is not None]
    if scored:
        worst = max(scored, key=lambda gs: gs[1].tvd or 0.0)
        lines.append(f"  furthest group: {worst[0]} ({_figures(worst[1])}, {report.group_personas[worst[0]]} personas)")
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
