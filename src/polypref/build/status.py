"""``polypref status DIR``: what a build folder holds, finished or not, read from its files alone (no config)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from polypref.build.lock import describe_holder, holder
from polypref.build.state import BuildState
from polypref.errors import OutputError, PolyprefError
from polypref.fidelity.store import spent as fidelity_spent
from polypref.generation import load_store


def read(folder: Path) -> dict[str, Any]:
    """The figures of a build folder; PolyprefError if it holds no build."""
    if not folder.is_dir():
        raise PolyprefError(f"{folder} is not a folder")
    state = BuildState(folder)
    held = state.held()  # a damaged state file is an OutputError that says so
    if held is None:
        raise OutputError(f"{folder} holds no polypref build")
    # a damaged report is a shard the build will make again
    finished = {i: r for i, r in state.reports().items() if r.done}
    store = state.store(held.judge_key)
    requests, tokens, stored = _store_figures(store.segments()) if held.judge_key else (0, _NO_TOKENS, 0)
    judge = held.judge
    prices = judge.prices or {}
    summary = state.summary()
    return {
        "folder": str(folder),
        "judge": {"backend": judge.backend, "model": judge.model},
        "runs": len(held.parts),
        "shards": {"done": len(finished), "total": held.num_shards},
        "judgments": {
            "planned": held.num_units,  # at the full judge.samples: adaptive sampling judges fewer
            "in_finished_shards": sum(r.units for r in finished.values()),
            # what the finished shards' budgets allowed: their progress through the plan
            "planned_in_finished_shards": sum(r.planned or r.units for r in finished.values()),
        },
        "stored": {"this_judge": stored, "all_judges": state.stored_judgments()},
        "requests": requests,  # the judge's: the personas' judgments and the persona-free run's
        "other_requests": {
            # requests (retries included) as the card's cost by kind counts them
            "fidelity_questions": fidelity_spent(state.fidelity_dir)["requests"],
            "generation": _generation_requests(state.generated_dir),
        },
        "tokens": tokens,
        "cost_usd": round(
            sum(tokens[f"{k}_tokens"] / 1e6 * prices.get(f"{k}_per_million", 0) for k in ("prompt", "completion")), 6
        )
        if prices
        else None,
        "finished": summary is not None and len(finished) == held.num_shards,
        "in_use_by": holder(folder),  # the command writing the folder now, if any (build.lock)
        "preferences": summary.preferences if summary else None,
    }


_NO_TOKENS = {"prompt_tokens": 0, "completion_tokens": 0}


def _generation_requests(store: Path) -> int:
    """Requests made for generated responses: a slot's row counts its runs' attempts, its latest the most."""
    rows = load_store(store)
    return int(rows.sort("attempts").unique(["response_id", "settings"], keep="last")["attempts"].sum() or 0)


def _store_figures(segments: list[Path]) -> tuple[int, dict[str, int], int]:
    """Requests made (attempts), tokens and answers held in the store's segments of one judge."""
    tokens = dict(_NO_TOKENS)
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


def describe(figures: dict[str, Any]) -> Iterator[str]:
    """The figures as lines for a terminal."""
    shards, judgments, tokens = figures["shards"], figures["judgments"], figures["tokens"]
    judge = figures["judge"]
    state = "finished" if figures["finished"] else "not finished (rerun its build command to resume)"
    yield f"{figures['folder']}: {state}; {figures['runs']} run(s) built it"
    if (who := figures["in_use_by"]) is not None:
        yield f"in use now by {describe_holder(who)}"
    yield f"shards: {shards['done']} of {shards['total']} done"
    judged, covered = judgments["in_finished_shards"], judgments["planned_in_finished_shards"]
    if judged == covered:
        yield f"judgments: {judged} of {judgments['planned']} in finished shards"
    else:  # adaptive sampling: shards finish having judged only part of their budget
        yield (
            f"judgments: {judged} in finished shards, which cover {covered} of the {judgments['planned']} planned "
            f"(adaptive sampling asked for {judged / covered:.0%} of their budget)"
        )
    who = ", ".join(str(judge[k]) for k in ("backend", "model") if judge.get(k))  # the simulator has no model
    yield (
        f"stored judgments: {figures['stored']['this_judge']} by this judge ({who}), "
        f"{figures['stored']['all_judges']} in all"
    )
    cost = f", cost ${figures['cost_usd']:.4f}" if figures["cost_usd"] is not None else ""
    yield (
        f"judge requests: {figures['requests']}; tokens: {tokens['prompt_tokens']} prompt, "
        f"{tokens['completion_tokens']} completion{cost}"
    )
    other = figures["other_requests"]
    if other["fidelity_questions"] or other["generation"]:
        yield (
            f"other requests: {other['fidelity_questions']} for the fidelity check's questions, {other['generation']} "
            "for generated responses"
        )
    if figures["preferences"] is not None:
        yield f"preferences: {figures['preferences']}"
