"""Getting started: init (the default config), init-spec (a population spec drafted from a survey file) and
validate (check a config and print the plan)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from polypref.cli.common import (
    ConfigArg,
    ForceOpt,
    OverwriteOpt,
    SetOpt,
    app,
    deprecated,
    err,
    load_settings,
    out,
    overwriting,
)
from polypref.config import DEFAULT_CONFIG_PATH
from polypref.errors import PolyprefError
from polypref.files import write_bytes
from polypref.runners.check import check_runner
from polypref.safety.secrets import scrub


@app.command()
def init(
    old_path: Annotated[
        Path | None, typer.Argument(hidden=True, metavar="path", help="Deprecated: --out PATH", show_default=False)
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Where to write the config [default: build.yaml]", show_default=False)
    ] = None,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Write the default build config, with a comment on every key, for you to edit."""
    path, replace = _init_path(old_path, out_path), overwriting(overwrite, force)
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the config file's name, e.g. {path / 'build.yaml'}")
    if path.exists() and not replace:
        raise PolyprefError(f"{path} exists; pass --overwrite to replace it")
    write_bytes(DEFAULT_CONFIG_PATH.read_bytes(), path)
    out.print(f"wrote {path}; build with: polypref build {shlex.quote(str(path))} --out DIR")


def _init_path(old_path: Path | None, out_path: Path | None) -> Path:
    """Where init writes: --out, or the path given as its argument before 0.2 (with a deprecation message)."""
    if old_path is None:
        return out_path or Path("build.yaml")
    if out_path is not None:
        raise typer.BadParameter("give the config's path once, with --out", param_hint="PATH")
    deprecated("`polypref init PATH`", f"`polypref init --out {shlex.quote(str(old_path))}`")
    return old_path


@app.command("init-spec")
def init_spec(
    survey: Annotated[Path, typer.Argument(help="Survey file: .sav/.zsav (SPSS), .dta (Stata), .parquet or .csv")],
    spec_path: Annotated[
        Path | None, typer.Option("--out", help="Where to write the spec (default: beside the survey, as NAME.yaml)")
    ] = None,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Draft a population spec from a survey file's variables, value labels and weights, for you to edit."""
    from polypref.population import draft, load_spec
    from polypref.population.survey import respondents

    path, replace = spec_path or survey.with_suffix(".yaml"), overwriting(overwrite, force)
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the spec file's name, e.g. {path / 'survey.yaml'}")
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise PolyprefError(f"{path}: a population spec is a .yaml or .yml file")
    if path.exists() and not replace:
        raise PolyprefError(f"{path} exists; pass --overwrite to replace it")
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

    cfg, source = load_settings(config, set_)
    check_runner(cfg, source)
    plan = pipeline.plan(cfg, Path("."), source)
    out.print(json.dumps(_plan_summary(plan), indent=2))


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
