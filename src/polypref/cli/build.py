"""Commands that run a Prefect flow of flows/ on an ephemeral local server: build (make or grow the dataset) and
fidelity (score the personas against the survey); the server and flow helpers, the progress bar and the printed
summary of a build."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polypref import interrupt, judges
from polypref.build.documents import Summary
from polypref.cli.common import (
    EXIT_UNANSWERED,
    AddPersonasOpt,
    ConfigArg,
    ForceOpt,
    JsonOpt,
    JsonOverwriteOpt,
    OutDirOpt,
    SetOpt,
    WaitOpt,
    app,
    check_json_path,
    err,
    is_stdout,
    load_settings,
    out,
    overwriting,
    write_json,
)
from polypref.errors import Interrupted, PolyprefError
from polypref.runners import prefect_server, signals
from polypref.runners.check import check_runner


@app.command()
def build(
    config: ConfigArg = None,
    out_dir: OutDirOpt = Path("out"),
    set_: SetOpt = None,
    overwrite: Annotated[
        bool, typer.Option(help="Discard everything --out holds, stored judgments too, and judge again")
    ] = False,
    add_personas: AddPersonasOpt = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
    wait: WaitOpt = False,
) -> None:
    """Build the dataset with the Prefect flow flows/build.py:build_dataset (ephemeral local server).

    A folder that holds a build grows (new personas and items become new shards) or, if the settings changed,
    is rebuilt from its stored judgments: only judgments never made are asked for. One command writes a folder
    at a time: a second one exits 2 (or, with --wait, starts once the first ends)."""
    from polypref import pipeline
    from polypref.build.lock import folder_lock
    from polypref.build.state import BuildState
    from polypref.pipeline import fidelity as fidelity_run

    cfg, source = load_settings(config, set_)
    BuildState(out_dir).check_writable()
    # planned under the lock: a build waited for may change what the folder holds
    with folder_lock(out_dir, wait=wait), _prefect_server() as server:  # it boots while the inputs are checked
        check_runner(cfg, source)
        plan = pipeline.plan(cfg, out_dir, source, add_personas, overwrite)
        pipeline.check_output(plan, overwrite)
        pipeline.check_endpoints(plan)
        summary = _run_flow(
            "build.py:build_dataset",
            dict(config=cfg, out=str(out_dir), overwrite=overwrite, source=source, add_personas=add_personas),
            server,
            progress=_progress_bar(plan, enabled=progress),
            stopped=lambda: fidelity_run.saved_summary(plan),
            head_start=fidelity_run.head_start(plan, reuse=not overwrite),
        )
    unanswered = _print_summary(summary, out_dir)
    if unanswered:
        err.print(
            f"{unanswered} judgments got no answer (see the card); rerun the same command to ask again for "
            "exactly those"
        )
        raise typer.Exit(EXIT_UNANSWERED)


@app.command()
def fidelity(
    config: ConfigArg = None,
    set_: SetOpt = None,
    json_path: JsonOpt = None,
    overwrite: JsonOverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Ask the config's personas the survey's own questions (each one's own answer held out of its portrayal) and
    score their answers against the survey, per group and overall, beside the same model without a persona.
    Runs the Prefect flow flows/fidelity.py:check_fidelity."""
    from polypref.fidelity import FidelityReport
    from polypref.fidelity import report as fidelity_report
    from polypref.pipeline import fidelity as fidelity_run

    cfg, source = load_settings(config, set_)
    check_json_path(json_path, overwriting(overwrite, force), "fidelity.json")
    with _prefect_server() as server:
        fidelity_run.standalone_population(cfg, source)  # every input checked before Prefect runs
        figures = _run_flow("fidelity.py:check_fidelity", dict(config=cfg, source=source), server)
    report = FidelityReport.from_json(figures)
    if not is_stdout(json_path):
        for line in fidelity_report.describe(report):
            out.print(line)
    if json_path is not None:
        write_json(figures, json_path)
    fidelity_run.gate(report, cfg, stopped="")
    if report.no_answer:
        err.print(f"{report.no_answer} questions got no answer from the endpoint; run the same command again")
        raise typer.Exit(EXIT_UNANSWERED)


@contextlib.contextmanager
def _prefect_server() -> Iterator[prefect_server.PrefectServer]:
    """Prefect's ephemeral server, launched now so that it boots while the block checks the inputs; stopped at
    once if the block fails before using it (bad input: exit 2 without a server left behind)."""
    prefect_server.use_defaults()  # before Prefect is imported or launched: it reads them once
    server = prefect_server.PrefectServer()
    server.launch()
    try:
        yield server
    finally:
        server.kill_launched()  # no-op once start() took it over: Prefect's own atexit hook stops that one


def _run_flow(
    entrypoint: str,
    parameters: dict[str, Any],
    server: prefect_server.PrefectServer,
    progress: Any = None,
    stopped: Callable[[], str] | None = None,
    head_start: contextlib.AbstractContextManager[None] | None = None,
) -> Any:
    """Run a flow of flows/ on Prefect's ephemeral server (``server``, launched by the caller); a signal stops it
    cleanly (exit 130 or 143, saying what ``stopped()`` finds kept and how to resume). ``head_start``: work the
    flow will take up, started once the flow is loaded, while Prefect's server finishes booting (seconds in which
    this process would only wait)."""
    try:
        with signals.StopOnSignal(server):
            flow = prefect_server.load_flow(entrypoint)
            prefect_server.quiet_console_about_our_errors()
            # Prefect's server is still booting (~3-5 s from launch): load the judge's client now rather than
            # after the flow has started (benchmarks/startup.py)
            judges.preload(parameters["config"].judge.backend)
            # progress first: the head start's questions count in it from the first answer
            with progress or contextlib.nullcontext(), head_start or contextlib.nullcontext():
                server.start()
                if interrupt.stop_requested():  # a signal while the server started: no judging was done yet
                    raise Interrupted(interrupt.signal_name())
                return signals.call_off_main_thread(lambda: flow(**parameters))
    except Interrupted:
        # the exception's own attribute may not survive Prefect's state handling; the stop request does
        name = interrupt.signal_name()
        kept = stopped() if stopped is not None else ""
        err.print(f"stopped by {name}" + (f": {kept}" if kept else ""))
        err.print(f"to resume, run the same command again: {_command_line()}")
        raise typer.Exit(128 + signal.Signals[name].value) from None
    except RuntimeError as e:
        if "ephemeral Prefect API server" not in str(e):
            raise
        raise PolyprefError(
            f"Prefect's local server did not start ({e}). If another Prefect version used this Prefect home, its "
            "database may be too new for this one: point PREFECT_HOME at a new folder, or set PREFECT_API_URL "
            "to a running Prefect server. Finished work is kept; rerun to resume."
        ) from None


def _command_line() -> str:
    return shlex.join(["polypref", *sys.argv[1:]])


class _progress_bar:
    """One total over every unit of work the build needs (progress.Tracker, fed by the core as it goes): a bar on
    a terminal, else a plain line every ``PLAIN_EVERY_S`` (a log, CI). The judgment store is read too, for the
    workers of a distributed build, which report to no tracker here."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, plan: Any, enabled: bool):
        from polypref import progress

        self.plan = plan
        self.enabled = enabled
        self.terminal = sys.stderr.isatty()
        self.stop = threading.Event()
        self.tracker = progress.Tracker()
        planned = plan.planned_requests()
        if "generation" in planned:
            self.tracker.expect(progress.GENERATING, planned["generation"])
        self.tracker.expect(progress.JUDGING, plan.num_units + plan.persona_free_units)
        self._tracking = progress.tracking(self.tracker)

    def __enter__(self) -> _progress_bar:
        self._tracking.__enter__()
        if self.enabled:
            self.thread = threading.Thread(target=self._bar if self.terminal else self._lines, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join()
        self._tracking.__exit__(*exc)

    def _snapshot(self, state: Any, baseline: int) -> Any:
        from polypref import progress

        return self.tracker.snapshot({progress.JUDGING: state.progress_units(self.plan.store, baseline)})

    def _bar(self) -> None:
        state, baseline = self.plan.state, self.plan.store.count()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("starting", total=None)
            while True:
                now = self._snapshot(state, baseline)
                bar.update(task, description=now.phase, completed=now.done, total=now.total or None)
                if self.stop.wait(0.5):
                    break
            now = self._snapshot(state, baseline)
            bar.update(task, description=now.phase, completed=now.done, total=now.total or None)

    def _lines(self) -> None:
        state, baseline = self.plan.state, self.plan.store.count()
        while not self.stop.wait(self.PLAIN_EVERY_S):
            err.print(self._snapshot(state, baseline).line())


def _print_summary(figures: dict[str, Any], out_dir: Path) -> int:
    """Print what was built (the same line whether this run judged everything or resumed), from what the flow
    returned (the summary and the push); return the number of judgments that got no answer."""
    summary = Summary.from_json(figures)
    reasons = ", ".join(f"{k} {v}" for k, v in summary.reasons.items())
    out.print(
        f"built {out_dir}: {summary.personas} personas, {summary.judgments} judgments, "
        f"{summary.preferences} preferences ({reasons})"
    )
    if skipped := (summary.item_source or {}).get("skipped"):
        counts = ", ".join(f"{reason} {n}" for reason, n in skipped.items())
        listed = out_dir / ".polypref" / "skipped.jsonl"
        out.print(f"left out {sum(skipped.values())} source rows ({counts}): listed in {listed}")
    split_rows = summary.split_rows() or {}
    if len(held := split_rows.get("personas") or {}) > 1:  # whole personas per split (output.splits)
        prefs = split_rows.get("preferences") or {}
        parts = [f"{name} {n} personas, {prefs.get(name, 0)} preferences" for name, n in held.items()]
        out.print(f"splits (by persona): {'; '.join(parts)}")
    if summary.reused_judgments:
        out.print(
            f"reused: {summary.reused_judgments} of the {summary.judgments} judgments came from earlier runs "
            "(no request)"
        )
    if (published := figures.get("published")) and published.get("skipped"):
        out.print(f"not published to {published['repo']}: {published['skipped']}; run the same command again")
    elif published:
        out.print(f"published: {published['repo']} ({published['tag'] or 'unchanged, no commit'})")
    test = "test" in split_rows.get("preferences", {})
    out.print(
        f'load it: datasets.load_dataset("{out_dir}", "preferences", split="train")'
        + (' (held-out personas: split="test")' if test else "")
    )
    return summary.unanswered
