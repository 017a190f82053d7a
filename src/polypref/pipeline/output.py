"""The output folder before judging: checked, claimed for a run, its personas written, responses generated."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from polypref import generation, splits
from polypref.build.plan import BuildPlan, RunState
from polypref.build.state_file import About, JudgeEntry, StateFile
from polypref.dataset import card
from polypref.dataset.configs import shard_path
from polypref.dataset.schema import to_arrow
from polypref.dataset.tables import (
    RunMeta,
    personas_frame,
)
from polypref.errors import OutputError
from polypref.files import WrittenFile, write_bytes, write_parquet_together
from polypref.hub import publish
from polypref.items import make_pairs
from polypref.judges import JudgeInfo

log = logging.getLogger("polypref.pipeline")


def check_output(plan: BuildPlan, overwrite: bool = False) -> StateFile | None:
    """State of the build already in the output folder (None: a new folder); raise if the folder is unusable.

    A folder built with other settings is not an error: the build replaces its dataset, rebuilt from the
    judgment store (only judgments never made are asked for). Leaves nothing behind, so the CLI can call it
    before starting Prefect.
    """
    plan.state.check_writable()
    if plan.config.publish.repo:
        publish.require_token(f"publish.repo {plan.config.publish.repo}")
    try:
        state = plan.state.held()
    except OutputError:
        if not overwrite:
            raise
        state = StateFile.model_construct(fingerprint="")  # damaged: replaced like any other build
    if state is None:
        if not plan.state.holds_nothing():
            raise OutputError(f"{plan.out} is not empty and holds no polypref build; choose an empty or new folder")
        return None
    if foreign := plan.state.foreign_files():  # checked before a rebuild clears data/, too
        raise OutputError(
            f"{foreign[0]} is not a shard of this build; move it out of {plan.out} (a build folder holds "
            "only what polypref writes)"
        )
    if not overwrite:
        plan.store.check()  # a foreign or damaged store segment stops the build here, not mid-run
    return state


def prepare_output(plan: BuildPlan, overwrite: bool = False) -> RunState:
    """Create the output folder, grow or resume the build it holds, or replace a build made with other settings
    (keeping its judgment store; ``overwrite`` discards that too).

    The personas table and a card that names the configs are written first, so a build in progress loads
    with ``datasets.load_dataset(out, "judgments")`` like a finished one (with the shards done so far).
    """
    state = check_output(plan, overwrite)
    plan.state.clean_temp_files()
    if state is not None and (overwrite or not plan.keeps_folder):
        stored = 0 if overwrite else plan.state.stored_judgments()
        log.info("%s holds a build with other settings: rebuilding it (%d judgments stored)", plan.out, stored)
        plan.state.clear_build(keep_store=not overwrite)
    new_parts = [p for p in plan.layout.parts if p.run_id is None]
    if new_parts or state is None or not plan.keeps_folder:
        run = RunState(run_id=uuid.uuid4().hex[:12], created_at=datetime.now(UTC).replace(microsecond=0))
        layout = replace(
            plan.layout,
            parts=tuple(
                p if p.run_id else replace(p, run_id=run.run_id, created_at=run.created_at.isoformat())
                for p in plan.layout.parts
            ),
        )
        judge = plan.config.model_dump(mode="json")["judge"]  # public: no credential reaches the folder
        about = About(plan.judge_key, JudgeEntry.model_validate(judge), plan.added_personas)
        plan.state.write_layout(plan.fingerprint, layout, plan.num_units, about)
    else:
        run = latest_run(plan)
        log.info("resuming %s (run %s)", plan.out, run.run_id)
    for index, problem in plan.state.forget_damaged_shards().items():
        log.warning("shard %d: %s; making it again from the judgment store", index, problem)
    _write_personas(plan, run)
    plan.state.write_skipped(plan.skipped_rows)
    if not (plan.out / "README.md").exists():
        write_bytes(card.render_in_progress(plan).encode(), plan.out / "README.md")
    return run


def latest_run(plan: BuildPlan) -> RunState:
    """The run that the folder's latest part belongs to (a prepared or resumed build's)."""
    latest = plan.layout.parts[-1] if plan.layout.parts else None
    if latest is None or not latest.run_id or not latest.created_at or not plan.keeps_folder:
        raise OutputError(f"{plan.out} holds no prepared build for these settings; start the build from its head")
    return RunState(latest.run_id, datetime.fromisoformat(latest.created_at))


def _write_personas(plan: BuildPlan, run: RunState) -> None:
    """The personas config: each part that adds personas writes them in files of its own, so the files of
    personas already built never change."""
    step = max(1, plan.config.output.units_per_shard)
    spec = plan.population.spec
    recorded = plan.state.recorded_files()
    written: dict[Path, WrittenFile] = {}
    covered = 0
    for part in plan.layout.parts:
        start, end = part.personas
        if end <= covered:
            continue
        meta = RunMeta(part.run_id or run.run_id, run.created(part.created_at), JudgeInfo("", "", simulated=False))
        for j, first in enumerate(range(start, end, step)):
            personas = plan.population.personas[first : min(first + step, end)]
            shares = plan.config.output.splits  # a file per split of these personas (splits.py)
            names = splits.present((p.id for p in personas), shares)
            paths = [shard_path(plan.out, "personas", part.first_shard + j, name) for name in names]
            entries = [recorded.get(path.relative_to(plan.out).as_posix()) for path in paths]
            if all(
                e is not None and plan.state.file_problem(p, e) is None for p, e in zip(paths, entries, strict=True)
            ):
                continue  # written by an earlier run
            frame = personas_frame(personas, meta)
            fields = {"attributes": list(spec.attributes), "attitudes": list(spec.attitudes.items)}
            tables = [
                (to_arrow("persona", rows, fields), path)
                for (_, rows), path in zip(splits.by_split(frame, shares, names), paths, strict=True)
            ]
            written.update(zip(paths, write_parquet_together(tables, plan.config.output.row_group_rows), strict=True))
        covered = end
    if written:
        plan.state.record_files(written)


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
