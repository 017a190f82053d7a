"""The fidelity check as the build and ``polypref fidelity`` run it: inputs checked first, answers saved with the
build as they arrive (``fidelity.store``: a stopped build's rerun asks only what was not answered) and the figures
once all are in (a rerun of the same judge on the same personas asks nothing), and the gate."""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from polypref import interrupt
from polypref.config import BuildConfig
from polypref.errors import OutputError, PolyprefError
from polypref.fidelity import store
from polypref.fidelity.check import check
from polypref.fidelity.results import FidelityReport
from polypref.fidelity.store import AnswerStore, settings_key
from polypref.judges.options import named_option
from polypref.population import load_spec, sample_population
from polypref.population.representatives import represent
from polypref.population.sample import Population
from polypref.population.survey import respondents
from polypref.records import content_hash

if TYPE_CHECKING:
    from polypref.build.plan import BuildPlan
from polypref.fidelity.report import figures, report_key, saved_report
from polypref.fidelity.sample import sampling
from polypref.generation.annotate import annotator
from polypref.pipeline.checks import check_before_work

log = logging.getLogger("polypref.fidelity")


_head_starts: dict[tuple[Path, str], Future[FidelityReport]] = {}  # (state folder, report key): head_start's check


HEAD_START_THREAD = "polypref-fidelity-head-start"


CALL_OFF_WAIT_S = 15.0  # a micro-batch normally ends in seconds; a dead endpoint's retries would take many minutes


class FidelityGateError(PolyprefError):
    """The personas scored worse than the configured threshold: the build stopped before judging."""


def standalone_population(config: BuildConfig, source: str) -> Population:
    """The personas a build with this config would judge, checked as the build checks them (items aside)."""
    spec = load_spec(config.population.spec)
    check_before_work(config, spec, source)
    if config.judge.backend != "simulated":
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
    saved = saved_report(plan.state, key)
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
            plan.fidelity_personas(),
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


def gate(report: FidelityReport, config: BuildConfig, stopped: str = ", so the build stopped before judging") -> None:
    """Raise FidelityGateError, saying why and what to do, when the gate is on and the personas fall short."""
    fidelity = config.fidelity
    if not fidelity.gate:
        return
    overall, floor = report.personas_scores.overall, report.floor.overall
    excess, limit = report.excess_tvd, fidelity.max_excess_tvd  # the excess over the floor: what role-play adds
    # with an excess threshold, the raw TVD threshold is off: a raw TVD is mostly sampling noise at 200 personas
    max_tvd = fidelity.max_tvd if limit is None else 1.0
    references = f" (persona-free baseline: {figures(report.baseline.overall)}; perfect role-play: {figures(floor)})"
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
