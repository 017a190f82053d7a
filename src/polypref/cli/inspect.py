"""Reading a build folder, given as the first argument: status (what a build, finished or not, holds) and evaluate
(its per-persona signal on held-out personas). Each takes --json PATH for its figures (``-``: print only them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polypref.cli.common import (
    ForceOpt,
    JsonOpt,
    JsonOverwriteOpt,
    app,
    check_json_path,
    is_stdout,
    out,
    overwriting,
    write_json,
)


@app.command()
def status(
    folder: Annotated[Path, typer.Argument(help="A build folder (finished or not)")],
    json_path: JsonOpt = None,
    overwrite: JsonOverwriteOpt = False,
) -> None:
    """Show what a (partial) build holds: shards done, judgments stored, requests and cost so far."""
    from polypref.build import status as folder_status

    check_json_path(json_path, overwrite, "status.json")
    figures = folder_status.read(folder)
    if not is_stdout(json_path):
        for line in folder_status.describe(figures):
            out.print(line)
    if json_path is not None:
        write_json(figures, json_path)


@app.command()
def evaluate(
    folder: Annotated[Path, typer.Argument(help="A finished build folder")],
    json_path: JsonOpt = None,
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
    overwrite: JsonOverwriteOpt = False,
    force: ForceOpt = None,
) -> None:
    """Measure the per-persona signal of a build on held-out personas: accuracy of the global majority, of the
    group's and each group attribute's majority, of k-shot nearest personas (k = 1-16) and of the simulator's
    truth, and the headroom (labels that differ from the global majority); overall, on contested pairs and per
    group."""
    from polypref.analysis import evaluate as evaluation

    check_json_path(json_path, overwriting(overwrite, force), "evaluate.json")
    preferences = evaluation.read_preferences(folder)
    scales = evaluation.spec_scales(folder)  # the attitude model's stance order
    if test_share is None:  # the build's own split: the personas its test split holds out
        figures = evaluation.evaluate(preferences, seed=seed, shares=evaluation.build_splits(folder), scales=scales)
    else:
        figures = evaluation.evaluate(preferences, test_share, seed, scales=scales)
    figures = {"folder": str(folder)} | figures
    if not is_stdout(json_path):
        for line in evaluation.describe(figures):
            out.print(line)
    if json_path is not None:
        write_json(figures, json_path)
