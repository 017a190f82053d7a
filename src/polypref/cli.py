"""polypref command line: init | init-spec | validate | annotate | template-items | fidelity | build | push | status |
evaluate | serve.

Exit statuses: 0 done; 2 a usage, config, output or judge-setup error (the message says which); 3 built, but
some judgments got no answer, or responses could not be generated because the endpoint never answered (rerun to
ask again for exactly those); 4 the fidelity gate stopped the build before judging (the personas' survey answers
were too far from the survey's); 130 stopped by SIGINT, 143 by SIGTERM
(saved work is kept; rerun the same command to resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from polypref import files, interrupt, judges, runners
from polypref.config import DEFAULT_CONFIG_PATH, BuildConfig, load_config
from polypref.errors import ConfigError, EndpointUnreachable, Interrupted, PolyprefError
from polypref.files import write_bytes
from polypref.items.config import ItemsConfig
from polypref.runners import prefect_server
from polypref.safety.secrets import scrub

EXIT_ERROR = 2
EXIT_UNANSWERED = 3
EXIT_GATE = 4

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain usage errors: "Usage: ... / Error: <one line>"; Rich's error panel wraps and truncates messages
    rich_markup_mode=None,
    help="Build synthetic persona preference datasets.",
)
# Markup off: messages carry user paths, and a file named "[bold]x.yaml" or "a[/b].yaml" must print as it is.
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
out = Console(markup=False, highlight=False, soft_wrap=True)

ConfigArg = Annotated[Path | None, typer.Argument(help="Build config YAML (default: the shipped default)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set population.size=500")]
OutDirOpt = Annotated[
    Path, typer.Option("--out", help="Output folder (Hub layout); one that holds a build resumes, grows or is rebuilt")
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="If another polypref command is writing the folder, wait for it to end")
]
AddPersonasOpt = Annotated[
    int, typer.Option("--add-personas", help="Grow the population by this many past what --out holds", min=0)
]


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    # A bare `polypref` is a usage error like any other: usage, one line saying what is missing, exit 2.
    if ctx.invoked_subcommand is None:
        ctx.fail(
            "Missing command: init (write a config), init-spec (draft a population spec from a survey file), "
            "validate (check a config), annotate (give open items topics and stances), template-items (make items "
            "from a spec), fidelity (score personas against the survey), build (make or grow the dataset), "
            "status (what a build folder holds), evaluate (its per-persona signal), push (publish it) or serve "
            "(build on a schedule)."
        )


def _load(config: Path | None, overrides: list[str] | None) -> tuple[BuildConfig, str]:
    # with no config file, the packaged default is valid: anything wrong came from the command line
    source = str(config) if config else "command line"
    return load_config(config, overrides or []), source


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config")],
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Write the default build config, with a comment on every key, for you to edit."""
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the config file's name, e.g. {path / 'build.yaml'}")
    if path.exists() and not force:
        raise PolyprefError(f"{path} exists; pass --force to replace it")
    write_bytes(DEFAULT_CONFIG_PATH.read_bytes(), path)
    out.print(f"wrote {path}; build with: polypref build {shlex.quote(str(path))} --out DIR")


@app.command("init-spec")
def init_spec(
    survey: Annotated[Path, typer.Argument(help="Survey file: .sav/.zsav (SPSS), .dta (Stata), .parquet or .csv")],
    spec_path: Annotated[
        Path | None, typer.Option("--out", help="Where to write the spec (default: beside the survey, as NAME.yaml)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Draft a population spec from a survey file's variables, value labels and weights, for you to edit."""
    from polypref.population import draft, load_spec
    from polypref.population.survey import respondents

    path = spec_path or survey.with_suffix(".yaml")
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the spec file's name, e.g. {path / 'survey.yaml'}")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise PolyprefError(f"{path}: a population spec is a .yaml or .yml file")
    if path.exists() and not force:
        raise PolyprefError(f"{path} exists; pass --force to replace it")
    made = draft.draft_spec(survey, path)
    write_bytes(made.text.encode("utf-8"), path)
    attitudes = made.spec["attitudes"]["items"]
    out.print(f"wrote {path}: {len(made.spec['attributes'])} attributes, {len(attitudes)} attitude items")
    try:  # the draft is meant to sample as written; say so, or say what to edit first
        used = respondents(load_spec(str(path))).frame.height
    except PolyprefError as e:
        err.print(f"note: edit the draft before using it: {scrub(str(e))}")
        return
    out.print(f"it loads and samples ({used} respondents usable); read it through and edit it, then write items on")
    out.print(
        f"its topics and run: polypref validate --set population.spec={shlex.quote(str(path))} --set items.source=…"
    )


@app.command()
def validate(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Check a config, its population spec, survey table and items, and print the plan. Writes nothing."""
    from polypref import pipeline

    cfg, source = _load(config, set_)
    runners.check(cfg, source)
    plan = pipeline.plan(cfg, Path("."), source)
    out.print(json.dumps(_plan_summary(plan), indent=2))


@app.command()
def annotate(
    config: ConfigArg = None,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the annotated items (JSONL)")] = Path(
        "annotated.jsonl"
    ),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Give the config's open items survey topics and stances, asking its LLM judge; writes polypref JSONL that
    the simulated judge (and anything that needs stances) can use as items.source."""
    import tempfile

    from polypref import pipeline
    from polypref.generation import annotate as annotating

    cfg, source = _load(config, set_)
    _check_new_file(out_path, force, "annotated.jsonl")
    generator, items, spec = pipeline.annotation_inputs(cfg, source)
    with tempfile.TemporaryDirectory(prefix="polypref-annotate-") as work:
        templates = getattr(cfg.judge, "templates", None)
        result = annotating.annotate(items, spec, generator, cfg.seed, Path(work), templates)
    annotating.write(result.items, out_path)
    out.print(annotating.summary(result, out_path, generator.model))
    out.print(_annotate_next_steps(result, out_path, config, set_ or [], cfg))


def _check_new_file(path: Path, force: bool, example: str) -> None:
    """Refuse, before any work, an output file that is a folder, exists (unless --force), is not a plain file
    (a device, a link: replacing it would replace the link or the device node, not write through it), or lies
    where nothing can be written."""
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the file's name, e.g. {path / example}")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PolyprefError(f"{path} is not a plain file (a link, a device ...); give another path")
    if path.exists() and not force:
        raise PolyprefError(f"{path} exists; pass --force to replace it")
    folder = path.absolute().parent
    while not folder.exists():  # the writer makes missing folders: the first that exists must take them
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise PolyprefError(f"{path}: cannot write in {folder}")


@app.command("template-items")
def template_items(
    spec: Annotated[str, typer.Argument(help="Item spec: a name in data/item_specs/ or a .yaml path")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the items (polypref JSONL)")] = Path(
        "items.jsonl"
    ),
    population: Annotated[
        str | None, typer.Option(help="Population spec whose attitudes and scale the topics and stances must match")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Make items from a spec (topics x groups x value dimensions x question templates, two options at opposite
    poles); writes polypref JSONL for items.source."""
    from polypref.generation import annotate as annotating
    from polypref.items.templated import load_item_spec, resolve_item_spec
    from polypref.population import load_spec

    _check_new_file(out_path, force, "items.jsonl")
    item_spec = load_item_spec(spec)
    if population is not None:
        item_spec.check_against(load_spec(population), str(resolve_item_spec(spec)))
    items = item_spec.items()
    annotating.write(items, out_path)
    out.print(f"wrote {out_path}: {len(items)} items from {resolve_item_spec(spec)}")
    out.print(f"build with them: polypref build --set items.source={shlex.quote(str(out_path))} ...")


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="A finished build folder")],
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo, ORG/NAME (created if missing)")],
    private: Annotated[bool, typer.Option(help="Create the repo private")] = False,
    revision: Annotated[str, typer.Option(help="Branch to push to")] = "main",
    wait: WaitOpt = False,
) -> None:
    """Upload the build's card and data to a Hub dataset repo (HF_TOKEN from the environment): only files the
    Hub lacks, in few commits, tagged v1, v2, ...; an unchanged folder makes no commit. Only a whole, finished
    build is pushed (every shard as it was written)."""
    from polypref.hub import publish

    result = publish.push(folder, repo, private=private, revision=revision, wait=wait)
    for line in publish.iter_summary(result):
        out.print(line)


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

    cfg, source = _load(config, set_)
    BuildState(out_dir).check_writable()
    # planned under the lock: a build waited for may change what the folder holds
    with folder_lock(out_dir, wait=wait), _prefect_server() as server:  # it boots while the inputs are checked
        runners.check(cfg, source)
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
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this file as JSON")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --json file")] = False,
) -> None:
    """Ask the config's personas the survey's own questions (each one's own answer held out of its portrayal) and
    score their answers against the survey, per group and overall, beside the same model without a persona.
    Runs the Prefect flow flows/fidelity.py:check_fidelity."""
    from polypref.fidelity import FidelityReport
    from polypref.fidelity import report as fidelity_report
    from polypref.pipeline import fidelity as fidelity_run

    cfg, source = _load(config, set_)
    if json_path is not None:
        _check_new_file(json_path, force, "fidelity.json")
    with _prefect_server() as server:
        fidelity_run.standalone_population(cfg, source)  # every input checked before Prefect runs
        figures = _run_flow("fidelity.py:check_fidelity", dict(config=cfg, source=source), server)
    report = FidelityReport.from_json(figures)
    for line in fidelity_report.describe(report):
        out.print(line)
    if json_path is not None:
        write_bytes((json.dumps(figures, indent=2, ensure_ascii=False) + "\n").encode(), json_path)
        out.print(f"wrote {json_path}")
    fidelity_run.gate(report, cfg, stopped="")
    if report.no_answer:
        err.print(f"{report.no_answer} questions got no answer from the endpoint; run the same command again")
        raise typer.Exit(EXIT_UNANSWERED)


@app.command()
def status(
    folder: Annotated[Path, typer.Argument(help="A build folder (finished or not)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """Show what a (partial) build holds: shards done, judgments stored, requests and cost so far."""
    from polypref.build import status as folder_status

    figures = folder_status.read(folder)
    if as_json:
        out.print(json.dumps(figures, indent=2))
        return
    for line in folder_status.describe(figures):
        out.print(line)


@app.command()
def evaluate(
    folder: Annotated[Path, typer.Argument(help="A finished build folder")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this file as JSON")
    ] = None,
    test_share: Annotated[
        float | None,
        typer.Option(
            "--test-share",
            help="Share of personas held out (a stable hash of persona_id), the rest learnt from; default: the "
            "build's own test split (output.splits), its train split learnt from",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Picks each held-out persona's shots")] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing --json file")] = False,
) -> None:
    """Measure the per-persona signal of a build on held-out personas: accuracy of the global majority, of the
    group's and each group attribute's majority, of k-shot nearest personas (k = 1-16) and of the simulator's
    truth, and the headroom (labels that differ from the global majority); overall, on contested pairs and per
    group."""
    from polypref.analysis import evaluate as evaluation

    if json_path is not None:
        _check_new_file(json_path, force, "evaluate.json")
    preferences = evaluation.read_preferences(folder)
    scales = evaluation.spec_scales(folder)  # the attitude model's stance order
    if test_share is None:  # the build's own split: the personas its test split holds out
        figures = evaluation.evaluate(preferences, seed=seed, shares=evaluation.build_splits(folder), scales=scales)
    else:
        figures = evaluation.evaluate(preferences, test_share, seed, scales=scales)
    figures = {"folder": str(folder)} | figures
    for line in evaluation.describe(figures):
        out.print(line)
    if json_path is not None:
        write_bytes((json.dumps(figures, indent=2, ensure_ascii=False) + "\n").encode(), json_path)
        out.print(f"wrote {json_path}")


@app.command()
def serve(
    config: ConfigArg = None,
    out_dir: OutDirOpt = Path("out"),
    set_: SetOpt = None,
    cron: Annotated[str, typer.Option(help="When to run (cron, UTC)")] = "0 3 * * *",
    interval: Annotated[
        float | None, typer.Option(help="Run every this many seconds instead of on the cron schedule", min=1)
    ] = None,
    add_personas: AddPersonasOpt = 0,
    name: Annotated[str, typer.Option(help="Deployment name")] = "polypref-refresh",
) -> None:
    """Run the build on a schedule from this process (Prefect serve; no separate server or worker). Each run adds
    what is new (items, --add-personas) as new shards, and pushes when the config names publish.repo."""
    from polypref.runners import serve as serving

    cfg, source = _load(config, set_)
    serving.serve(cfg, out_dir, source=source, cron=cron, interval=interval, add_personas=add_personas, name=name)


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
        with prefect_server.StopOnSignal(server):
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
                return prefect_server.call_off_main_thread(lambda: flow(**parameters))
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


def _plan_summary(plan: Any) -> dict[str, Any]:
    return {
        "spec": plan.population.spec.name,
        "personas": len(plan.population.personas),
        "groups": len([g for g, n in plan.population.group_counts.items() if n]),
        "items": {k: v for k in ("source", "revision", "format", "limit", "skipped") if (v := plan.item_source.get(k))},
        "prompts": len(plan.items),
        "pairs": len(plan.pairs),
        "judgments": plan.num_units,
        "requests": plan.planned_requests(),  # the model requests, by kind (none with the simulated judge)
        "shards": plan.num_shards,
        "fingerprint": plan.fingerprint,
    }


def _print_summary(summary: dict[str, Any], out_dir: Path) -> int:
    """Print what was built (the same line whether this run judged everything or resumed); return the number
    of judgments that got no answer."""
    reasons = ", ".join(f"{k} {v}" for k, v in (summary.get("reasons") or {}).items())
    out.print(
        f"built {out_dir}: {summary['personas']} personas, {summary['judgments']} judgments, "
        f"{summary['preferences']} preferences ({reasons})"
    )
    if skipped := (summary.get("item_source") or {}).get("skipped"):
        counts = ", ".join(f"{reason} {n}" for reason, n in skipped.items())
        listed = out_dir / ".polypref" / "skipped.jsonl"
        out.print(f"left out {sum(skipped.values())} source rows ({counts}): listed in {listed}")
    split_rows = (summary.get("splits") or {}).get("rows") or {}
    if len(held := split_rows.get("personas") or {}) > 1:  # whole personas per split (output.splits)
        prefs = split_rows.get("preferences") or {}
        parts = [f"{name} {n} personas, {prefs.get(name, 0)} preferences" for name, n in held.items()]
        out.print(f"splits (by persona): {'; '.join(parts)}")
    reused = int(summary.get("reused_judgments") or 0)
    if reused:
        out.print(f"reused: {reused} of the {summary['judgments']} judgments came from earlier runs (no request)")
    if (published := summary.get("published")) and published.get("skipped"):
        out.print(f"not published to {published['repo']}: {published['skipped']}; run the same command again")
    elif published:
        out.print(f"published: {published['repo']} ({published['tag'] or 'unchanged, no commit'})")
    test = "test" in ((summary.get("splits") or {}).get("rows") or {}).get("preferences", {})
    out.print(
        f'load it: datasets.load_dataset("{out_dir}", "preferences", split="train")'
        + (' (held-out personas: split="test")' if test else "")
    )
    return int(summary.get("unanswered") or 0)


def _only_unanswered(error: PolyprefError) -> bool:
    """Generation stopped only because the endpoint never answered: like unanswered judgments, a rerun helps."""
    from polypref.generation import GenerationError

    return isinstance(error, GenerationError) and set(error.failed) == {"no_answer"}


def _exit_status(error: PolyprefError) -> int:
    from polypref.pipeline.fidelity import FidelityGateError

    if isinstance(error, FidelityGateError):
        return EXIT_GATE
    if isinstance(error, EndpointUnreachable):  # like unanswered requests: nothing wrong with the inputs
        return EXIT_UNANSWERED
    return EXIT_UNANSWERED if _only_unanswered(error) else EXIT_ERROR


def _print_error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", scrub(message)))  # a --set value may hold a credential


def main(argv: list[str] | None = None) -> None:
    """The `polypref` script. Typer runs standalone, so usage errors print usage and exit 2 as in any CLI;
    our own errors print one message, never a traceback."""
    try:
        app(args=argv, prog_name="polypref")
    except PolyprefError as e:
        _print_error(str(e))
        raise SystemExit(_exit_status(e)) from None


# items settings that apply to the annotated file as to the source; every other one says how the source was read,
# and the annotated file is polypref JSONL holding exactly the items read
_PAIRING = ("pairing", "pairs_per_prompt")


def _annotate_next_steps(
    result: Any, out: Path, config: Path | None, overrides: Sequence[str], cfg: BuildConfig
) -> str:
    """Commands to run next, from the same folder, that work as printed: the same config and --set overrides,
    the annotated file as the items (read as written: the original source's format, columns, sample and topic
    filter reset), and the simulated judge when every item is annotated; else (or when the build generates the
    responses, which then have no stances) the config's own LLM judge, the only kind that judges open items."""
    defaults = ItemsConfig()
    ours = {"items.source": _yaml_text(str(out))}
    for name in ItemsConfig.model_fields:
        default = getattr(defaults, name)
        if name not in ("source", *_PAIRING) and getattr(cfg.items, name) != default:
            ours[f"items.{name}"] = _yaml_text(default) if isinstance(default, str) else json.dumps(default)
    samples = f", samples: {cfg.judge.samples}" if cfg.judge.samples != 1 else ""
    simulated = f"judge={{backend: simulated{samples}}}"
    if result.still_open == 0 and cfg.generate is None:
        ours["judge"] = simulated.partition("=")[2]
        head = "check them, then build with the simulated judge:"
    elif cfg.generate is not None:
        head = (
            "the build generates their responses, without stances, which the simulated judge needs: check and build "
            f"them with the config's {cfg.judge.backend} judge, which judges open items from the persona's portrayal:"
        )
    else:
        head = (
            f"{result.still_open} items are still open, which the simulated judge refuses: check and build them with "
            f"the config's {cfg.judge.backend} judge, which judges open items from the persona's portrayal (or give "
            f"them a topic and stances in {out} by hand, or drop them, and add --set {shlex.quote(simulated)}):"
        )
    # an override of a key set here (or inside it) would be replaced anyway: left out
    kept = [o for o in overrides if not any(_within(o.partition("=")[0].strip(), key) for key in ours)]
    sets = [*kept, *(f"{key}={value}" for key, value in ours.items())]
    args = shlex.join([*([str(config)] if config is not None else []), *(a for s in sets for a in ("--set", s))])
    dataset = shlex.quote(str(out.with_name(f"{out.stem}-dataset")))
    return f"{head}\n  polypref validate {args}\n  polypref build {args} --out {dataset}"


def _within(key: str, section: str) -> bool:
    """Whether --set ``key`` sets ``section`` or a key inside it (so a later --set of ``section`` replaces it)."""
    return key == section or key.startswith(f"{section}.")


def _yaml_text(text: str) -> str:
    """``text`` as a --set value that reads back as that string (plain if YAML keeps it so, else quoted)."""
    try:
        plain = files.parse_yaml(text, "") == text
    except ConfigError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)
