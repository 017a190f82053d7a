"""``polypref status DIR``: what a build folder holds, finished or not, read from its files alone (no config)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from polypref.dataset.state import BuildState
from polypref.errors import OutputError, PolyprefError


def read(folder: Path) -> dict[str, Any]:
    """The figures of a build folder; PolyprefError if it holds no build."""
    if not folder.is_dir():
        raise PolyprefError(f"{folder} is not a folder")
    state = BuildState(folder)
    held = state.read()  # a damaged state file is an OutputError that says so
    if held is None:
        raise OutputError(f"{folder} holds no polypref build")
    reports = state.reports()
    finished = {i: r for i, r in reports.items() if not r.get("unanswered")}
    store = state.store(held.get("judge_key") or "")
    requests, tokens, stored = _store_figures(store.segments())
    judge = held.get("judge") or {}
    prices = judge.get("prices") or {}
    summary = _summary(state.root / "summary.json")
    return {
        "folder": str(folder),
        "judge": {k: judge.get(k) for k in ("backend", "model")},
        "runs": len(held.get("parts") or []),
        "shards": {"done": len(finished), "total": held["num_shards"]},
        "judgments": {
            "planned": held["num_units"],
            "in_finished_shards": sum(int(r.get("units", 0)) for r in finished.values()),
        },
        "stored": {"this_judge": stored, "all_judges": state.stored_judgments()},
        "requests": requests,
        "tokens": tokens,
        "cost_usd": round(
            sum(tokens[f"{k}_tokens"] / 1e6 * prices[f"{k}_per_million"] for k in ("prompt", "completion")), 6
        )
        if prices
        else None,
        "finished": summary is not None and len(finished) == held["num_shards"],
        "preferences": summary.get("preferences") if summary else None,
    }


def _store_figures(segments: list[Path]) -> tuple[int, dict[str, int], int]:
    """Requests made (attempts), tokens and answers held in the store's segments of one judge."""
    tokens = {"prompt_tokens": 0, "completion_tokens": 0}
    if not segments:
        return 0, tokens, 0
    try:
        sums = (
            pl.scan_parquet(segments)
            .select(
                pl.col("attempts").cast(pl.Int64).sum(),
                pl.col("prompt_tokens").cast(pl.Int64).sum(),
                pl.col("completion_tokens").cast(pl.Int64).sum(),
                pl.len().alias("stored"),
            )
            .collect()
            .row(0, named=True)
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        raise OutputError(f"a judgment store segment in {segments[0].parent} does not read: {str(e)[:200]}") from None
    tokens = {k: int(sums[k] or 0) for k in tokens}
    return int(sums["attempts"] or 0), tokens, int(sums["stored"])


def _summary(path: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def describe(figures: dict[str, Any]) -> Iterator[str]:
    """The figures as lines for a terminal."""
    shards, judgments, tokens = figures["shards"], figures["judgments"], figures["tokens"]
    judge = figures["judge"]
    state = "finished" if figures["finished"] else "not finished (rerun its build command to resume)"
    yield f"{figures['folder']}: {state}; {figures['runs']} run(s) built it"
    yield f"shards: {shards['done']} of {shards['total']} done"
    yield f"judgments: {judgments['in_finished_shards']} of {judgments['planned']} in finished shards"
    who = ", ".join(str(judge[k]) for k in ("backend", "model") if judge.get(k))  # the simulator has no model
    yield (
        f"stored judgments: {figures['stored']['this_judge']} by this judge ({who}), "
        f"{figures['stored']['all_judges']} in all"
    )
    cost = f", cost ${figures['cost_usd']:.4f}" if figures["cost_usd"] is not None else ""
    yield (
        f"requests: {figures['requests']}; tokens: {tokens['prompt_tokens']} prompt, "
        f"{tokens['completion_tokens']} completion{cost}"
    )
    if figures["preferences"] is not None:
        yield f"preferences: {figures['preferences']}"
