"""The one seam flows call: plan() -> prepare_output() -> run_shard() per shard -> finalize().

Plain Python with no Prefect import, so the whole build runs and tests without an orchestrator. Shards are
persona-major blocks of personas: every order and sample of a (persona, pair) lands in one shard, so the
swap and agreement filters stay shard-local and a shard is judged, filtered and written on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from polypref import SCHEMA_VERSION, __version__
from polypref.config import BuildConfig, fingerprint_payload
from polypref.dataset import card
from polypref.dataset.schema import to_arrow
from polypref.dataset.tables import (
    TIE,
    RunMeta,
    judgments_frame,
    judgments_output,
    personas_frame,
    preferences_frame,
)
from polypref.dataset.writer import shard_path, write_json, write_parquet
from polypref.errors import ConfigError, OutputError
from polypref.filters import apply_filters, filters_from_config, reason_counts
from polypref.items import load_items, make_pairs
from polypref.items.sources import resolve_items_path
from polypref.judges import Judge, JudgeInfo, collect_verdicts
from polypref.population import Population, load_spec, sample_population
from polypref.population.spec import resolve_spec_path
from polypref.records import Item, ResponsePair, UnitBatch

log = logging.getLogger("polypref.pipeline")
STATE_DIR = ".polypref"


@dataclass(frozen=True)
class BuildPlan:
    config: BuildConfig
    out: Path
    population: Population
    items: tuple[Item, ...]
    pairs: tuple[ResponsePair, ...]
    personas_per_shard: int
    fingerprint: str

    @property
    def num_shards(self) -> int:
        return math.ceil(len(self.population.personas) / self.personas_per_shard)

    @property
    def units_per_persona(self) -> int:
        return len(self.pairs) * 2 * self.config.judge.samples

    @property
    def num_units(self) -> int:
        return len(self.population.personas) * self.units_per_persona

    def batch(self, index: int) -> UnitBatch:
        start = index * self.personas_per_shard
        personas = self.population.personas[start : start + self.personas_per_shard]
        return UnitBatch.persona_major(personas, self.pairs, self.config.judge.samples, shard=index)

    def state_path(self, *parts: str) -> Path:
        return self.out.joinpath(STATE_DIR, *parts)


@dataclass(frozen=True)
class RunState:
    run_id: str
    created_at: datetime


@dataclass
class ShardReport:
    index: int
    units: int
    preferences: int
    reasons: dict[str, int]
    # scored against the simulator's ground truth (zero for LLM judges): raw vs after filters
    truth_valid: int = 0
    truth_correct: int = 0
    truth_kept: int = 0
    truth_kept_correct: int = 0
    first_position_valid: int = 0  # valid verdicts naming the first-shown response
    first_position_kept: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # invalid verdicts per error category
    retries: int = 0  # extra requests for invalid outputs
    recovered: int = 0  # judgments that were valid only after a retry


def plan(config: BuildConfig, out: str | Path, source: str = "config") -> BuildPlan:
    """Validate every input and lay out the shards; reads only inputs, writes nothing."""
    spec = load_spec(config.population.spec)
    if spec.opt_in and not config.population.accept_terms:
        raise ConfigError(
            source,
            [
                (
                    "population.accept_terms",
                    f"spec {spec.name} uses a source with {spec.terms_class.replace('_', '-')} terms: "
                    f"{spec.terms} Set population.accept_terms: true to build with it.",
                )
            ],
        )
    _check_judge_environment(config, source)
    items = load_items(config.items.source, spec, config.items.topics)
    pairs = make_pairs(items, config.items.pairing, config.items.pairs_per_prompt, config.seed)
    population = sample_population(
        spec, config.population.size, config.population.allocation, config.seed, source=source
    )
    units_per_persona = len(pairs) * 2 * config.judge.samples
    return BuildPlan(
        config=config,
        out=Path(out),
        population=population,
        items=items,
        pairs=pairs,
        personas_per_shard=max(1, config.output.units_per_shard // units_per_persona),
        fingerprint=_fingerprint(config),
    )


def _check_judge_environment(config: BuildConfig, source: str) -> None:
    """What the judge needs from this machine (an engine install, a key in the environment) is checked before
    any work, not discovered mid-run."""
    if config.judge.backend == "vllm":
        from polypref.judges.vllm import require_vllm

        require_vllm()
    env = getattr(config.judge, "api_key_env", None)
    if env and not os.environ.get(env):
        raise ConfigError(
            source,
            [
                (
                    "judge.api_key_env",
                    f"environment variable {env} is not set (the key is "
                    "read from the environment, never from the config; use null for a server "
                    "without authentication)",
                )
            ],
        )


def _fingerprint(config: BuildConfig) -> str:
    """Config content plus the inputs it names: a changed spec or item file is a different build."""
    h = hashlib.sha256(json.dumps(fingerprint_payload(config), sort_keys=True).encode())
    h.update(resolve_spec_path(config.population.spec).read_bytes())
    h.update(resolve_items_path(config.items.source).read_bytes())
    h.update(f"{__version__}/{SCHEMA_VERSION}".encode())
    return h.hexdigest()[:16]


def check_output(plan: BuildPlan, overwrite: bool = False) -> dict[str, Any] | None:
    """State of the build already in the output folder, if it may resume; raise if the folder is unusable.

    Writes nothing, so the CLI can call it before starting Prefect.
    """
    if plan.out.exists() and not plan.out.is_dir():
        raise OutputError(f"{plan.out} is a file, not a folder")
    state_file = plan.state_path("state.json")
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state["fingerprint"] == plan.fingerprint:
            return state
        if not overwrite:
            raise OutputError(
                f"{plan.out} holds a different build (config or inputs changed); "
                "choose another --out, or pass --overwrite to replace it"
            )
    elif plan.out.exists() and any(plan.out.iterdir()):
        raise OutputError(f"{plan.out} is not empty and holds no polypref build; choose an empty or new folder")
    return None


def prepare_output(plan: BuildPlan, overwrite: bool = False) -> RunState:
    """Create the output folder, or resume the build it holds. Refuses to mix two different builds."""
    state = check_output(plan, overwrite)
    if state is not None:
        log.info("resuming run %s in %s", state["run_id"], plan.out)
        return RunState(state["run_id"], datetime.fromisoformat(state["created_at"]))
    for name in ("data", STATE_DIR, "README.md"):  # only reached with --overwrite of an earlier build
        target = plan.out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    run = RunState(run_id=uuid.uuid4().hex[:12], created_at=datetime.now(UTC).replace(microsecond=0))
    write_json(
        {
            "fingerprint": plan.fingerprint,
            "run_id": run.run_id,
            "created_at": run.created_at.isoformat(),
            "num_shards": plan.num_shards,
            "num_units": plan.num_units,
        },
        plan.state_path("state.json"),
    )
    return run


def shard_report(plan: BuildPlan, index: int) -> ShardReport | None:
    """The report of a finished shard; its file is written last, so it marks completion."""
    path = plan.state_path("shards", f"{index:05d}.json")
    return ShardReport(**json.loads(path.read_text())) if path.exists() else None


def run_shard(plan: BuildPlan, run: RunState, index: int, judge: Judge) -> ShardReport:
    """Judge, filter and write one shard; a finished shard is skipped, so reruns resume."""
    if (done := shard_report(plan, index)) is not None:
        return done
    batch = plan.batch(index)
    meta = RunMeta(run.run_id, run.created_at, judge.info)
    partial = plan.state_path("partial", f"{index:05d}")
    saved = [pl.read_parquet(p) for p in sorted(partial.glob("*.parquet"))]  # micro-batches of a crashed run

    def save(frame: pl.DataFrame) -> None:
        if frame.height:
            write_parquet(frame.to_arrow(), partial / f"{frame['unit'][0]:09d}.parquet", frame.height)

    frame = judgments_frame(batch, collect_verdicts(judge, batch, saved, on_frame=save), meta)
    frame = apply_filters(frame, filters_from_config(plan.config.filters))
    preferences = preferences_frame(frame, batch, meta)

    rows = plan.config.output.row_group_rows
    attribute_names = list(plan.population.spec.attributes)
    write_parquet(
        to_arrow("judgment", judgments_output(frame)),
        shard_path(plan.out, "judgments", index, plan.num_shards),
        rows,
    )
    write_parquet(
        to_arrow("preference", preferences, {"persona_attributes": attribute_names}),
        shard_path(plan.out, "preferences", index, plan.num_shards),
        rows,
    )
    report = _report(index, frame, preferences.height)
    write_json(asdict(report), plan.state_path("shards", f"{index:05d}.json"))
    shutil.rmtree(partial, ignore_errors=True)
    return report


def _report(index: int, frame: pl.DataFrame, preferences: int) -> ShardReport:
    valid = pl.col("error").is_null()
    kept = pl.col("drop_reason").is_null()
    scored = valid & pl.col("true_winner").is_not_null() & (pl.col("true_winner") != TIE)
    correct = pl.col("winner") == pl.col("true_winner")
    first = pl.col("winner") == pl.col("first_response_id")
    stats = frame.select(
        truth_valid=scored.sum(),
        truth_correct=(scored & correct).sum(),
        truth_kept=(scored & kept).sum(),
        truth_kept_correct=(scored & kept & correct).sum(),
        first_position_valid=(valid & first).sum(),
        first_position_kept=(kept & first).sum(),
        prompt_tokens=pl.col("prompt_tokens").sum(),
        completion_tokens=pl.col("completion_tokens").sum(),
        retries=(pl.col("attempts") - 1).sum(),
        recovered=((pl.col("attempts") > 1) & valid).sum(),
    ).row(0, named=True)
    categories = frame.filter(~valid).group_by(pl.col("error").str.split(":").list.first()).len()
    tokens = {k: int(stats.pop(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
    return ShardReport(
        index=index,
        units=frame.height,
        preferences=preferences,
        reasons=reason_counts(frame),
        tokens=tokens,
        errors=dict(categories.iter_rows()),
        **{k: int(v) for k, v in stats.items()},
    )


def finalize(plan: BuildPlan, run: RunState, reports: list[ShardReport], judge: JudgeInfo) -> dict[str, Any]:
    """Write the personas config and the dataset card; return the build summary."""
    if sorted(r.index for r in reports) != list(range(plan.num_shards)):
        raise RuntimeError(f"finalize needs all {plan.num_shards} shard reports, got {len(reports)}")
    meta = RunMeta(run.run_id, run.created_at, judge)
    personas = plan.population.personas
    step = max(1, plan.config.output.units_per_shard)
    total = math.ceil(len(personas) / step)
    spec = plan.population.spec
    for i in range(total):
        frame = personas_frame(personas[i * step : (i + 1) * step], meta)
        table = to_arrow(
            "persona", frame, {"attributes": list(spec.attributes), "attitudes": list(spec.attitudes.items)}
        )
        write_parquet(table, shard_path(plan.out, "personas", i, total), plan.config.output.row_group_rows)
    summary = summarize(plan, run, reports, judge)
    (plan.out / "README.md").write_text(card.render(plan, summary))
    write_json(summary, plan.state_path("summary.json"))
    return summary


def summarize(plan: BuildPlan, run: RunState, reports: list[ShardReport], judge: JudgeInfo) -> dict[str, Any]:
    def total(name: str) -> int:
        return sum(getattr(r, name) for r in reports)

    reasons = _merge(r.reasons for r in reports)
    tokens = _merge(r.tokens for r in reports)
    prices = judge.params.get("prices") or {}
    valid = sum(n for reason, n in reasons.items() if reason != "invalid")
    kept = reasons.get("kept", 0)
    return {
        "run_id": run.run_id,
        "created_at": run.created_at.isoformat(),
        "fingerprint": plan.fingerprint,
        "personas": len(plan.population.personas),
        "pairs": len(plan.pairs),
        "prompts": len(plan.items),
        "judgments": total("units"),
        "preferences": total("preferences"),
        "shards": plan.num_shards,
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "judge": asdict(judge),
        "errors": _merge(r.errors for r in reports),
        "retries": total("retries"),
        "recovered_by_retry": total("recovered"),
        "tokens": tokens,
        "cost_usd": round(
            sum(
                tokens.get(f"{kind}_tokens", 0) / 1e6 * prices[f"{kind}_per_million"]
                for kind in ("prompt", "completion")
            ),
            6,
        )
        if prices
        else None,
        "first_position_rate": {
            "valid": _ratio(total("first_position_valid"), valid),
            "kept": _ratio(total("first_position_kept"), kept),
        },
        "ground_truth_accuracy": {
            "valid": _ratio(total("truth_correct"), total("truth_valid")),
            "kept": _ratio(total("truth_kept_correct"), total("truth_kept")),
        }
        if judge.simulated
        else None,
    }


def _merge(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for c in counts:
        for key, n in c.items():
            merged[key] = merged.get(key, 0) + n
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None
