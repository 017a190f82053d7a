"""polypref command line: init | validate | build."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polypref import assets
from polypref.config import DEFAULT_CONFIG_PATH, BuildConfig, load_config
from polypref.errors import PolyprefError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build synthetic persona preference datasets.",
)
err = Console(stderr=True)
out = Console()

ConfigArg = Annotated[Path | None, typer.Argument(help="Build config YAML (default: the shipped default)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set population.size=500")]

# Prefect's ephemeral server needs ~29 s to migrate a fresh database on 2 cores (stack notes §1.1), and
# telemetry would log errors offline. Users' own settings win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
    "VLLM_LOGGING_LEVEL": "WARNING",  # the engine's INFO lines would bury the progress bar
}


def _load(config: Path | None, overrides: list[str] | None) -> tuple[BuildConfig, str]:
    source = str(config) if config else str(DEFAULT_CONFIG_PATH)
    return load_config(config, overrides or []), source


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config")],
    force: Annotated[bool, typer.Option(help="Replace an existing file")] = False,
) -> None:
    """Write the default build config, with a comment on every key, for you to edit."""
    if path.exists() and not force:
        raise PolyprefError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEFAULT_CONFIG_PATH, path)
    out.print(f"wrote {path}; build with: polypref build {path} --out DIR")


@app.command()
def validate(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Check a config, its population spec, survey table and items, and print the plan. Writes nothing."""
    from polypref import pipeline

    cfg, source = _load(config, set_)
    plan = pipeline.plan(cfg, Path("."), source)
    out.print(json.dumps(_plan_summary(plan), indent=2))


@app.command()
def build(
    config: ConfigArg = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (Hub layout)")] = Path("out"),
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a different build already in --out")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Build the dataset with the Prefect flow flows/build.py:build_dataset (ephemeral local server)."""
    from polypref import pipeline

    cfg, source = _load(config, set_)
    plan = pipeline.plan(cfg, out_dir, source)  # every input is checked before Prefect starts
    pipeline.check_output(plan, overwrite)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    flow = _load_flow()
    try:
        with _progress_bar(plan, enabled=progress):
            summary = flow(config=cfg, out=str(out_dir), overwrite=overwrite)
    except RuntimeError as e:
        if "ephemeral Prefect API server" not in str(e):
            raise
        raise PolyprefError(
            f"Prefect's local server did not start ({e}). If another Prefect version used this Prefect home, its "
            "database may be too new for this one: point PREFECT_HOME at a new folder, or set PREFECT_API_URL "
            "to a running Prefect server. Finished shards are kept; rerun to resume."
        ) from None
    _print_summary(summary, out_dir)


def _load_flow() -> Any:
    from prefect.flows import load_flow_from_entrypoint

    # use_placeholder_flow=False: an import error in the flow file must surface, not become a stub flow
    return load_flow_from_entrypoint(f"{assets.path('flows', 'build.py')}:build_dataset", use_placeholder_flow=False)


class _progress_bar:
    """Polls the shard completion files, so progress works however the shards are scheduled."""

    def __init__(self, plan: Any, enabled: bool):
        self.plan = plan
        self.enabled = (enabled and sys.stderr.isatty()) or (enabled and os.environ.get("POLYPREF_PROGRESS") == "1")
        self.stop = threading.Event()

    def __enter__(self) -> _progress_bar:
        if self.enabled:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join()

    def _done(self) -> int:
        """Units in finished shards, plus the saved micro-batches of shards still being judged."""
        import pyarrow.parquet as pq

        units, finished = 0, set()
        for path in self.plan.state_path("shards").glob("*.json"):
            try:
                units += json.loads(path.read_text())["units"]
                finished.add(path.stem)
            except (OSError, ValueError, KeyError):
                continue  # being replaced right now; read it next tick
        for path in self.plan.state_path("partial").glob("*/*.parquet"):
            if path.parent.name in finished or path.name.startswith("."):
                continue
            try:
                units += pq.read_metadata(path).num_rows
            except (OSError, ValueError):
                continue
        return units

    def _run(self) -> None:
        columns = (
            TextColumn("judging"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("judgments"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("judging", total=self.plan.num_units)
            while not self.stop.wait(0.5):
                bar.update(task, completed=self._done())
            bar.update(task, completed=self._done())


def _plan_summary(plan: Any) -> dict[str, Any]:
    return {
        "spec": plan.population.spec.name,
        "personas": len(plan.population.personas),
        "groups": len([g for g, n in plan.population.group_counts.items() if n]),
        "prompts": len(plan.items),
        "pairs": len(plan.pairs),
        "judgments": plan.num_units,
        "shards": plan.num_shards,
        "fingerprint": plan.fingerprint,
    }


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    reasons = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items())
    out.print(
        f"built {out_dir}: {summary['personas']} personas, {summary['judgments']} judgments, "
        f"{summary['preferences']} preferences ({reasons})"
    )
    out.print(f'load it: datasets.load_dataset("{out_dir}", "preferences")')


def main() -> None:
    try:
        app(standalone_mode=False)
    except PolyprefError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, markup=True, soft_wrap=True)
        raise SystemExit(2) from None
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted; rerun the same command to resume")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as e:  # click usage errors and the like carry their own exit codes
        import click

        if isinstance(e, click.ClickException):
            e.show()
            raise SystemExit(e.exit_code) from None
        raise
