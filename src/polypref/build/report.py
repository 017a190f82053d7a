"""What a build reports: per-shard statistics (kept beside the shard as its completion marker) and the summary
of a whole build that the card, summary.json, the CLI and Prefect artifacts show. Their types, and how they are
stored, are ``build.documents``'."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import polars as pl

from polypref.build.documents import ShardReport, Summary
from polypref.filters import reason_counts
from polypref.judges import JudgeInfo
from polypref.judges.base import NO_ANSWER
from polypref.records import PAIR_KEYS
from polypref.safety.provenance import public

if TYPE_CHECKING:
    from polypref.build.plan import BuildPlan, RunState


def shard_stats(index: int, frame: pl.DataFrame, preferences: pl.DataFrame) -> ShardReport:
    valid = pl.col("error").is_null()
    kept = pl.col("drop_reason").is_null()
    # one rule for every accuracy figure: a verdict is right when it names the persona's true outcome, the
    # response it prefers or "tie" for an indifferent persona (so a pick for an indifferent persona is wrong)
    scored = valid & pl.col("true_side").is_not_null()
    correct = pl.col("side") == pl.col("true_side")
    first = pl.col("winner_id") == pl.col("first_response_id")
    stats = frame.select(
        valid=valid.sum(),
        named=(valid & pl.col("winner_id").is_not_null()).sum(),
        truth_valid=scored.sum(),
        truth_correct=(scored & correct).sum(),
        truth_kept=(scored & kept).sum(),
        truth_kept_correct=(scored & kept & correct).sum(),
        first_position_valid=(valid & first).sum(),
        first_position_kept=(kept & first).sum(),
        prompt_tokens=pl.col("prompt_tokens").sum(),
        completion_tokens=pl.col("completion_tokens").sum(),
        retries=(pl.col("attempts") - 1).clip(lower_bound=0).sum(),
        not_asked=(pl.col("attempts") == 0).sum(),
        recovered=((pl.col("attempts") > 1) & valid).sum(),
        unanswered=(pl.col("drop_reason") == NO_ANSWER).sum(),
    ).row(0, named=True)
    category = pl.col("error").str.split(":").list.first()
    # invalid answers by cause; units that never got an answer are counted apart (unanswered), not as answers
    categories = frame.filter(~valid & (category != NO_ANSWER)).group_by(category).len()
    formats = frame.filter(pl.col("response_format").is_not_null()).group_by("response_format").len()
    tokens = {k: int(stats.pop(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
    per_pair = frame.group_by(PAIR_KEYS).agg(pl.col("sample").n_unique().alias("samples"))
    samples = per_pair.group_by("samples").len().sort("samples")
    labelled = (
        preferences.filter(pl.col("source_label_agrees").is_not_null())
        .group_by("persona_group")
        .agg(pl.len(), pl.col("source_label_agrees").sum())
    )
    return ShardReport(
        index=index,
        units=frame.height,
        planned=frame.height,  # what a fixed number of samples judges; run_shard sets the budget's count
        preferences=preferences.height,
        samples_per_pair={str(n): int(count) for n, count in samples.iter_rows()},
        source_label={g: [int(n), int(agree)] for g, n, agree in labelled.iter_rows()},
        reasons=reason_counts(frame),
        tokens=tokens,
        errors=dict(categories.iter_rows()),
        formats=dict(formats.iter_rows()),
        **{k: int(v) for k, v in stats.items()},
    )


def _cost(tokens: dict[str, Any], prices: dict[str, float]) -> float | None:
    """Dollars for ``tokens`` at the configured prices per million (None: no prices configured)."""
    if not prices:
        return None
    return round(
        sum((tokens.get(f"{k}_tokens") or 0) / 1e6 * prices[f"{k}_per_million"] for k in ("prompt", "completion")), 6
    )


def _by_kind(
    judgments: dict[str, dict[str, Any]], other: dict[str, dict[str, int | None]], prices: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Every kind of request with its tokens and, at the judge's prices, its cost (the judge's kinds; generators
    have prices of their own), and their total: what the whole build paid, not only its judgments."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind, spent in {**judgments, **other}.items():
        tokens = {k: spent.get(k) for k in ("prompt_tokens", "completion_tokens")}
        cost = _cost(tokens, prices) if kind != "generation" and None not in tokens.values() else None
        kinds[kind] = {"requests": int(spent.get("requests") or 0), **tokens, "cost_usd": cost}
    if kinds:
        kinds["total"] = {"requests": sum(k["requests"] for k in kinds.values())}
    return kinds


def summarize(
    plan: BuildPlan,
    run: RunState,
    reports: list[ShardReport],
    judge: JudgeInfo,
    other_requests: dict[str, dict[str, int | None]] | None = None,
) -> Summary:
    """The build's figures (the configs made at the end are the caller's to add). ``other_requests``: requests
    beyond the personas' judgments, by kind (pipeline.other_requests), counted with them in ``requests_by_kind``."""

    def total(name: str) -> int:
        return _total(reports, name)

    reasons = _merge(r.reasons for r in reports)
    tokens = _merge(r.tokens for r in reports)
    prices = judge.params.get("prices") or {}
    kept = reasons.get("kept", 0)
    # every judgment's requests, whichever run made them
    requests = total("units") - total("not_asked") + total("retries")
    return Summary(
        **_sizes(plan, run, reports, requests),
        reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        judge=public(asdict(judge)),
        errors=_merge(r.errors for r in reports),
        retries=total("retries"),
        unanswered=total("unanswered"),
        reused_judgments=total("reused"),
        response_formats=_merge(r.formats for r in reports),
        recovered_by_retry=total("recovered"),
        tokens=tokens,
        cost_usd=_cost(tokens, prices),
        first_position_rate={
            # a tie names no position: over the verdicts that name a response (a report from before `named`
            # was kept counts every valid verdict)
            "valid": _ratio(total("first_position_valid"), total("named") or total("valid")),
            "kept": _ratio(total("first_position_kept"), kept),
        },
        requests_by_kind=_by_kind(
            {"judgments": {"requests": requests, **tokens}} if not judge.simulated else {},
            other_requests or {},
            prices,
        ),
        item_source=public(plan.item_source),
        source_label_agreement=_agreement(reports),
        ground_truth_accuracy={
            "valid": _ratio(total("truth_correct"), total("truth_valid")),
            "kept": _ratio(total("truth_kept_correct"), total("truth_kept")),
        }
        if judge.simulated
        else None,
    )


def _sizes(plan: BuildPlan, run: RunState, reports: list[ShardReport], requests: int) -> dict[str, Any]:
    """The summary's head (``Summary``'s fields by name): the run, and how much the build holds and asked for
    (``requests``: the judge's)."""
    preferences = _total(reports, "preferences")
    return {
        "run_id": run.run_id,
        "created_at": run.created_at.isoformat(),
        "fingerprint": plan.fingerprint,
        "personas": len(plan.population.personas),
        "pairs": len(plan.pairs),
        "prompts": len(plan.items),
        "judgments": _total(reports, "units"),
        "planned_judgments": sum(r.planned or r.units for r in reports),  # reports of older builds lack it
        "preferences": preferences,
        "judge_requests": requests,
        "calls_per_kept": round(requests / preferences, 4) if preferences else None,
        "samples_per_pair": dict(
            sorted(_merge(r.samples_per_pair for r in reports).items(), key=lambda kv: int(kv[0]))
        ),
        "adaptive": plan.config.adaptive.model_dump(exclude={"enabled"}) | {"budget": plan.config.judge.samples}
        if plan.config.adaptive.enabled
        else None,
        "shards": plan.num_shards,
    }


def _total(reports: list[ShardReport], name: str) -> int:
    return sum(getattr(r, name) for r in reports)


def _agreement(reports: list[ShardReport]) -> dict[str, Any] | None:
    """How often personas chose what the source itself prefers, overall and per group (None: no labels)."""
    groups: dict[str, list[int]] = {}
    for r in reports:
        for group, (n, agree) in r.source_label.items():
            counts = groups.setdefault(group, [0, 0])
            counts[0] += n
            counts[1] += agree
    if not groups:
        return None
    n, agree = sum(c[0] for c in groups.values()), sum(c[1] for c in groups.values())
    return {
        "preferences": n,
        "rate": _ratio(agree, n),
        "groups": {g: {"preferences": c[0], "rate": _ratio(c[1], c[0])} for g, c in sorted(groups.items())},
    }


def _merge(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in counts:
        for key, n in c.items():
            merged[key] = merged.get(key, 0) + n
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None
