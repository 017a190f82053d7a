"""The one seam flows call: plan() -> prepare_output() -> run_shard() per shard -> finalize().

Plain Python with no Prefect import, so the whole build runs and tests without an orchestrator. Shards are
persona-major blocks of personas: every order and sample of a (persona, pair) lands in one shard, so the
swap and agreement filters stay shard-local and a shard is judged, filtered and written on its own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from polypref import generation
from polypref.build_plan import BuildPlan, RunState
from polypref.config import BuildConfig
from polypref.dataset import card
from polypref.dataset.schema import to_arrow
from polypref.dataset.state import STATE_DIR
from polypref.dataset.tables import RunMeta, conversational, judgments_frame, personas_frame, preferences_frame
from polypref.dataset.writer import shard_path, write_bytes, write_parquet, write_parquet_together
from polypref.errors import ConfigError, OutputError
from polypref.filters import apply_filters, filters_from_config
from polypref.fingerprint import build_fingerprint, input_files
from polypref.generation import check_environment, plan_slots
from polypref.items import make_pairs, read_items
from polypref.items.sources import check_judgeable
from polypref.judges import Judge, JudgeInfo, collect_verdicts
from polypref.judges.base import UNANSWERED
from polypref.population import load_spec, sample_population
from polypref.population.spec import SurveySpec
from polypref.records import Item, content_hash
from polypref.report import SHARD_REPORT, ShardReport, shard_stats, summarize

log = logging.getLogger("polypref.pipeline")


_last_plan: dict[str, BuildPlan] = {}


def plan(config: BuildConfig, out: str | Path, source: str = "config") -> BuildPlan:
    """Validate every input and lay out the shards; reads only inputs, writes nothing.

    The CLI plans before starting Prefect (to fail fast) and the flow plans again: the second call with the
    same config, folder and unchanged input files returns the first plan instead of sampling again.
    """
    spec = load_spec(config.population.spec)
    key = json.dumps([config.model_dump(mode="python"), str(out), source, _input_stamps(config, spec)], default=str)
    if (cached := _last_plan.get(key)) is not None:
        return cached
    made = _plan(config, out, source, spec)
    _last_plan.clear()
    _last_plan[key] = made
    return made


def _input_stamps(config: BuildConfig, spec: SurveySpec) -> list[object]:
    """Size and mtime of the input files a build reads (what would make a cached plan stale). A Hub source is
    resolved once per process, so only local item files are stamped."""
    stamps: list[object] = []
    items = Path(config.items.source)
    local = sorted(items.rglob("*")) if items.is_dir() else [items]
    for path in (*input_files(config, spec), *local):
        try:
            st = path.stat()
            stamps.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((str(path), None))
    return stamps


def _plan(config: BuildConfig, out: str | Path, source: str, spec: SurveySpec) -> BuildPlan:
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
    try:
        loaded = read_items(config.items, spec, config.seed)
    except ConfigError as e:
        if e.source != "config":
            raise
        raise ConfigError(source, e.problems) from None  # a config value's fault: name the config
    items = loaded.items
    named = loaded.source.provenance.get("source") or config.items.source
    if config.generate is not None:
        if loaded.format != "prompts":
            raise ConfigError(
                source,
                [
                    (
                        "generate",
                        f"the items already have responses (format {loaded.format}); generate is for a "
                        "prompts-only source (items.format: prompts)",
                    )
                ],
            )
        items = plan_slots(items, config.generate)  # final response ids: pairs are planned before any text exists
    check_judgeable(items, config.judge.backend, named)
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
        fingerprint=build_fingerprint(
            config,
            spec,
            [f.path for f in loaded.source.files],
            {"format": loaded.format, "columns": loaded.columns, "items": content_hash(*(i.id for i in items))},
        ),
        item_source={
            **loaded.source.provenance,
            "format": loaded.format,
            "limit": config.items.limit,
            "generated_by": [g.model for g in config.generate.generators] if config.generate else None,
        },
    )


def _check_judge_environment(config: BuildConfig, source: str) -> None:
    """What the judge needs from this machine (an engine install, a key in the environment) is checked before
    any work, not discovered mid-run."""
    if config.judge.backend == "vllm":
        from polypref.judges.vllm import require_vllm

        require_vllm()
    if config.generate is not None and (problems := check_environment(config.generate)):
        raise ConfigError(source, problems)
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


def annotation_inputs(config: BuildConfig, source: str) -> tuple[Any, tuple[Item, ...], SurveySpec]:
    """What ``polypref annotate`` needs, checked before any request: the judge as a free-text backend, the
    items and the spec whose topics and scales the answers must name."""
    from polypref.annotate import annotator

    spec = load_spec(config.population.spec)
    try:
        generator = annotator(config.judge)
        loaded = read_items(config.items, spec, config.seed)
    except ConfigError as e:
        if e.source != "config":
            raise
        raise ConfigError(source, e.problems) from None
    _check_judge_environment(config, source)
    return generator, loaded.items, spec


def check_output(plan: BuildPlan, overwrite: bool = False) -> dict[str, Any] | None:
    """State of the build already in the output folder, if it may resume; raise if the folder is unusable.

    Leaves nothing behind, so the CLI can call it before starting Prefect.
    """
    plan.state.check_writable()
    try:
        state = plan.state.read()
    except OutputError:
        if not overwrite:
            raise
        state = {"fingerprint": None}  # damaged: replaced like any other build
    if state is not None:
        if state["fingerprint"] == plan.fingerprint:
            if foreign := plan.state.foreign_files():
                raise OutputError(
                    f"{foreign[0]} is not a shard of this build; move it out of {plan.out} (a build folder holds "
                    "only what polypref writes)"
                )
            return state
        if not overwrite:
            raise OutputError(
                f"{plan.out} holds a different build (its config or inputs differ: the seed, population, items, "
                "judge or filters, an input file, a template or polypref's judging code); choose another --out, "
                "or pass --overwrite to replace it"
            )
    elif plan.out.exists() and any(plan.out.iterdir()):
        raise OutputError(f"{plan.out} is not empty and holds no polypref build; choose an empty or new folder")
    return None


def prepare_output(plan: BuildPlan, overwrite: bool = False) -> RunState:
    """Create the output folder, or resume the build it holds. Refuses to mix two different builds.

    The personas table and a card that names the configs are written first, so a build in progress loads
    with ``datasets.load_dataset(out, "judgments")`` like a finished one (with the shards done so far).
    """
    state = check_output(plan, overwrite)
    plan.state.clean_temp_files()
    if state is not None:
        log.info("resuming run %s in %s", state["run_id"], plan.out)
        run = RunState(state["run_id"], datetime.fromisoformat(state["created_at"]))
    else:
        for name in ("data", STATE_DIR, "README.md"):  # what an earlier build left, when --overwrite replaces it
            target = plan.out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        run = RunState(run_id=uuid.uuid4().hex[:12], created_at=datetime.now(UTC).replace(microsecond=0))
        plan.state.write(
            {
                "fingerprint": plan.fingerprint,
                "run_id": run.run_id,
                "created_at": run.created_at.isoformat(),
                "num_shards": plan.num_shards,
                "num_units": plan.num_units,
            }
        )
    _write_personas(plan, run)
    if not (plan.out / "README.md").exists():
        _write_text(plan.out / "README.md", card.render_in_progress(plan))
    return run


def _write_personas(plan: BuildPlan, run: RunState) -> None:
    personas = plan.population.personas
    step = max(1, plan.config.output.units_per_shard)
    total = math.ceil(len(personas) / step)
    spec = plan.population.spec
    meta = RunMeta(run.run_id, run.created_at, JudgeInfo("", "", simulated=False))
    for i in range(total):
        path = shard_path(plan.out, "personas", i, total)
        if path.exists():  # written by the run this one resumes
            continue
        frame = personas_frame(personas[i * step : (i + 1) * step], meta)
        table = to_arrow(
            "persona", frame, {"attributes": list(spec.attributes), "attitudes": list(spec.attitudes.items)}
        )
        write_parquet(table, path, plan.config.output.row_group_rows)


def generate_responses(plan: BuildPlan) -> BuildPlan:
    """The plan with its generated responses' texts (prompts-only sources); saved ones are reused, so a rerun
    asks only for what is missing. Must run before any shard: every pair needs both texts."""
    generate = plan.config.generate
    if generate is None:
        return plan
    filled = generation.generate(plan.items, generate, plan.config.seed, plan.state.generated_dir)
    items = plan.config.items
    pairs = make_pairs(filled, items.pairing, items.pairs_per_prompt, plan.config.seed)
    if [p.id for p in pairs] != [p.id for p in plan.pairs]:
        raise RuntimeError("generated responses changed the planned pairs")  # ids are fixed before generation
    return replace(plan, items=filled, pairs=pairs)


def shard_report(plan: BuildPlan, index: int) -> ShardReport | None:
    """The report of a shard with nothing left to do (its file is written last, so it marks completion)."""
    stored = plan.state.read_report(index)
    if stored is None:
        return None
    try:
        report = SHARD_REPORT.validate_python(stored)
    except ValidationError:  # damaged, or written by another version: redo the shard rather than trust it
        log.warning("shard %d: unreadable report %s; judging the shard again", index, plan.state.report_path(index))
        return None
    return report if report.done else None


def run_shard(plan: BuildPlan, run: RunState, index: int, judge: Judge) -> ShardReport:
    """Judge, filter and write one shard; a finished shard is skipped, so reruns resume.

    Units that never got an answer are written as such (the card counts them) but not saved as done: the
    shard stays unfinished and a rerun asks again for exactly those units.
    """
    if (done := shard_report(plan, index)) is not None:
        return replace(done, reused=done.units)
    batch = plan.batch(index)
    meta = RunMeta(run.run_id, run.created_at, judge.info)
    saved = plan.state.saved_micro_batches(index)  # micro-batches of an interrupted run
    reused = sum(f.height for f in saved)

    def save(frame: pl.DataFrame) -> None:
        plan.state.save_micro_batch(index, frame.filter(~UNANSWERED), plan.config.output.row_group_rows)

    frame = judgments_frame(batch, collect_verdicts(judge, batch, saved, on_frame=save), meta)
    frame = apply_filters(frame, filters_from_config(plan.config.filters))
    preferences = preferences_frame(frame, batch, meta)

    rows = plan.config.output.row_group_rows
    attribute_names = list(plan.population.spec.attributes)
    write_parquet_together(
        [
            (to_arrow("judgment", frame), shard_path(plan.out, "judgments", index, plan.num_shards)),
            (
                to_arrow(
                    "preference",
                    preferences,
                    {"persona_attributes": attribute_names},
                    messages=conversational(plan.pairs),
                ),
                shard_path(plan.out, "preferences", index, plan.num_shards),
            ),
        ],
        rows,
    )
    report = replace(shard_stats(index, frame, preferences), reused=reused)
    plan.state.write_report(index, asdict(report))
    if report.done:
        plan.state.clear_partial(index)
    return report


def finalize(plan: BuildPlan, run: RunState, reports: list[ShardReport], judge: JudgeInfo) -> dict[str, Any]:
    """Write the dataset card and the build summary; return the summary."""
    if sorted(r.index for r in reports) != list(range(plan.num_shards)):
        raise RuntimeError(f"finalize needs all {plan.num_shards} shard reports, got {len(reports)}")
    summary = summarize(plan, run, reports, judge)
    _write_text(plan.out / "README.md", card.render(plan, summary))
    plan.state.write_summary(summary)
    return summary


def _write_text(path: Path, text: str) -> None:
    write_bytes(text.encode("utf-8"), path)
