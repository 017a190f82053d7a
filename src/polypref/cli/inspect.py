"""Reading a build folder: status (what a build, finished or not, holds) and evaluate (its per-persona signal on
held-out personas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from polypref.cli.common import app, check_new_file, out
from polypref.files import write_bytes


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
        check_new_file(json_path, force, "evaluate.json")
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
