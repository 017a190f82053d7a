"""The one seam flows call: plan() -> prepare_output() -> run_shard() per shard -> finalize().

Plain Python with no Prefect import, so the whole build runs and tests without an orchestrator. Shards are
persona-major blocks of personas: every order and sample of a (persona, pair) lands in one shard, so the
swap and agreement filters stay shard-local and a shard is judged, filtered and written on its own.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import ValidationError

from polypref import generation, progress, publish
from polypref.build_plan import BuildPlan, RunState
from polypref.config import POPULATION_LIMIT, BuildConfig
from polypref.dataset import card, splits
from polypref.dataset.distributions import dataset_distributions
from polypref.dataset.episodes import split_episodes
from polypref.dataset.layout import lay_out, pairs_per_shard
from polypref.dataset.review import dataset_review
from polypref.dataset.schema import arrow_schema, to_arrow
from polypref.dataset.state import MAP_PNG, BuildState
from polypref.dataset.tables import (
    RunMeta,
    conversational,
    judgments_frame,
    pair_rows,
    personas_frame,
    preferences_frame,
    stamped,
    with_source_columns,
)
from polypref.dataset.weights import WEIGHT_COLUMNS, dataset_weights
from polypref.dataset.writer import (
    CONFIGS,
    FINAL_CONFIGS,
    WrittenFile,
    shard_path,
    write_bytes,
    write_parquet,
    write_parquet_parts,
    write_parquet_parts_together,
    write_parquet_together,
)
from polypref.errors import ConfigError, OutputError
from polypref.filters import apply_filters, filters_from_config
from polypref.filters.sequential import Judged, SequentialRule, judge_in_rounds
from polypref.fingerprint import build_fingerprint, data_settings, input_files, judge_key, judging_templates
from polypref.generation import check_environment, plan_slots
from polypref.items import make_pairs, read_items
from polypref.items.sources import check_judgeable
from polypref.judges import Judge, JudgeInfo
from polypref.judges.base import VERDICT_COLUMNS
from polypref.population import load_spec, sample_population
from polypref.population.baseline import persona_free
from polypref.population.representatives import represent
from polypref.population.representatives import summary as representatives_summary
from polypref.population.spec import SurveySpec
from polypref.records import Item, UnitBatch, content_hash, record_digest
from polypref.report import SHARD_REPORT, ShardReport, shard_stats, summarize

log = logging.getLogger("polypref.pipeline")


_last_plan: dict[str, BuildPlan] = {}


def plan(
    config: BuildConfig,
    out: str | Path,
    source: str = "config",
    add_personas: int = 0,
    overwrite: bool = False,
    remember: bool = True,
) -> BuildPlan:
    """Validate every input and lay out the shards; reads only inputs (and the folder's layout), writes nothing.

    ``add_personas`` grows the population past the personas ``out`` already holds (a scheduled refresh): the
    size becomes the larger of ``population.size`` and those personas plus ``add_personas``. ``overwrite``
    lays the build out anew whatever the folder holds.

    The CLI plans before starting Prefect (to fail fast) and the flow plans again: the second call with the
    same config, folder and unchanged input files returns the first plan instead of sampling again.
    """
    spec = load_spec(config.population.spec)
    state = BuildState(out)
    # the build the folder holds: its state, and which shards are done (a finished refresh grows; see _plan)
    stamps = [_input_stamps(config, spec), _stamp(state.state_file), _stamp(state.root / "shards")]
    key = json.dumps([config.model_dump(mode="python"), str(out), source, add_personas, overwrite, stamps], default=str)
    if (cached := _last_plan.get(key)) is not None:
        return cached
    made = _plan(config, out, source, spec, add_personas, overwrite)
    if not remember:  # a throwaway plan (a calibrator's reference build) leaves the build's own in place
        return made
    _last_plan.clear()
    _last_plan[key] = made
    return made


def _input_stamps(config: BuildConfig, spec: SurveySpec) -> list[object]:
    """Size and mtime of the input files a build reads (what would make a cached plan stale), and the content of
    its templates (the user's may be edited between two plans). A Hub source is resolved once per process, so only
    local item files are stamped."""
    items = Path(config.items.source)
    local = sorted(items.rglob("*")) if items.is_dir() else [items]
    return [_stamp(path) for path in (*input_files(config, spec), *local)] + [judging_templates(config, spec)]


def _stamp(path: Path) -> object:
    try:
        st = path.stat()
        return (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return (str(path), None)


def _plan(
    config: BuildConfig, out: str | Path, source: str, spec: SurveySpec, add_personas: int, overwrite: bool
) -> BuildPlan:
    check_before_work(config, spec, source)
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
    fingerprint = build_fingerprint(config, spec)
    source_columns = None
    if loaded.kept is not None:
        key, *names = loaded.kept.columns
        source_columns = loaded.kept.select(pl.col(key).alias("prompt_id"), pl.struct(names).alias("source_columns"))
        # shards hold the kept values: other names or values are another dataset, made again from the store
        # (a digest polars may compute otherwise in another version: then the shards are made again, no request)
        fingerprint = content_hash(fingerprint, names, int(loaded.kept.hash_rows(seed=0).sum()), size=16)
    state = BuildState(out)
    previous = None if overwrite else state.read_layout(fingerprint)
    as_messages = conversational(pairs)
    if previous is not None and state.published_as_messages() not in (None, as_messages):
        # one column holds one type: shards kept as they are would not load beside the new ones
        kind = "messages" if as_messages else "plain text"
        log.warning("%s: these items publish as %s, unlike its shards; all are made again from the store", out, kind)
        previous = None
    added = 0 if overwrite else state.added_personas()
    if add_personas and previous is not None and state.unfinished():
        # a refresh that was stopped: finish it, rather than grow again by the same amount (next run grows)
        log.warning("%s holds an unfinished run: finishing it; --add-personas applies to the next run", out)
    else:
        added += add_personas
    size = config.population.size + added
    if size > POPULATION_LIMIT:
        raise ConfigError(source, [("population.size", f"growing to {size} personas passes {POPULATION_LIMIT}")])
    k = config.population.representatives
    if k is not None and add_personas:
        # growing the sample re-clusters it: other representatives and weights, so nothing built would be kept
        raise ConfigError(
            source,
            [
                (
                    "population.representatives",
                    "--add-personas cannot grow a build of representatives (a larger sample is clustered anew); "
                    "raise population.size instead (the representatives are then chosen and judged anew)",
                )
            ],
        )
    population = sample_population(
        spec, size, config.population.allocation, config.seed, source=source, counts_for=config.population.size
    )
    if k is not None:
        population = represent(population, k, config.seed)  # only the representatives are judged
    persona_digests = tuple(record_digest(p) for p in population.personas)
    # a generated pair's texts do not exist yet: its digest names what will write them instead
    writers = data_settings(config)["generate"]
    pair_digests = tuple(record_digest((p, writers) if writers else p) for p in pairs)
    layout, kept = lay_out(previous, persona_digests, pair_digests, config.output.units_per_shard, config.judge.samples)
    return BuildPlan(
        config=config,
        out=Path(out),
        population=population,
        items=items,
        pairs=pairs,
        fingerprint=fingerprint,
        judge_key=judge_key(config, spec),
        layout=layout,
        keeps_folder=kept,
        added_personas=added,
        persona_digests=persona_digests,
        pair_digests=pair_digests,
        item_source={
            **loaded.source.provenance,
            "format": loaded.format,
            "limit": config.items.limit,
            "generated_by": [g.model for g in config.generate.generators] if config.generate else None,
            "skipped": dict(loaded.skipped.counts.most_common()),
        },
        skipped_rows=tuple(loaded.skipped.rows),
        source_columns=source_columns,
    )


def check_before_work(config: BuildConfig, spec: SurveySpec, source: str) -> None:
    """What the items aside needs checking before any work: an opt-in survey's terms are accepted, the judge can
    run here, and the fidelity check's topics are the spec's."""
    from polypref.fidelity.run import check_topics

    check_topics(config, spec, source)
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
    _check_runner(config, source)


def _check_runner(config: BuildConfig, source: str) -> None:
    """What the runner needs, checked before any work: a server the pool's workers share, or prefect-ray."""
    if config.runner.kind == "workpool":
        from polypref import serve, workpool

        workpool.check(source)
        serve.flow_parameters(config, Path("."), source, 0)  # the workers get the config as Prefect stores it
    elif config.runner.kind == "ray":
        try:
            import prefect_ray  # noqa: F401
        except ImportError:
            raise ConfigError(source, [("runner.kind", "ray needs prefect-ray: pip install 'polypref[ray]'")]) from None


def check_endpoints(plan: BuildPlan) -> None:
    """Every OpenAI-compatible endpoint the build calls (the judge's, the generators') takes a connection: a
    closed port or an unknown host stops the build here, in a moment, with nothing sent or written (the judge's
    own probe, before its first request, then checks the key and the model). Not asked of a build whose store
    may already hold every judgment (a rerun needs no endpoint), nor of workers' endpoints (a work pool or Ray
    cluster may reach what this machine cannot): for those the judge's own probe decides, if a request is due."""
    from polypref.errors import EndpointUnreachable
    from polypref.judges import probe
    from polypref.secrets import redact_url

    config = plan.config
    if config.runner.kind != "local":
        return
    wanted: list[tuple[str, str]] = []
    if config.judge.backend == "openai":
        wanted += [("judge", url) for url in config.judge.endpoints]
    for index, generator in enumerate(config.generate.generators if config.generate else ()):
        if generator.backend == "openai":
            wanted += [(f"generate.generators.{index}", url) for url in generator.endpoints]
    dead: dict[str, list[tuple[str, str]]] = {}
    for (section, url), cause in zip(wanted, probe.unconnectable([url for _, url in wanted]), strict=True):
        if cause is not None:
            dead.setdefault(section, []).append((redact_url(url), cause))
    # the store's footers are read only when an endpoint is down: not on every build's way to its first request
    if dead and plan.store.count() < plan.num_units + plan.persona_free_units:
        section, found = next(iter(dead.items()))
        raise EndpointUnreachable(probe.unreachable_message(section, found, how="a TCP connection"))


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
    """State of the build already in the output folder (None: a new folder); raise if the folder is unusable.

    A folder built with other settings is not an error: the build replaces its dataset, rebuilt from the
    judgment store (only judgments never made are asked for). Leaves nothing behind, so the CLI can call it
    before starting Prefect.
    """
    plan.state.check_writable()
    if plan.config.publish.repo:
        publish.require_token(f"publish.repo {plan.config.publish.repo}")
    try:
        state = plan.state.read()
    except OutputError:
        if not overwrite:
            raise
        state = {"fingerprint": None}  # damaged: replaced like any other build
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
        about = {
            "judge_key": plan.judge_key,
            "judge": {k: judge.get(k) for k in ("backend", "model", "prices")},
            "added_personas": plan.added_personas,
        }
        plan.state.write_layout(plan.fingerprint, layout, plan.num_units, about)
    else:
        run = latest_run(plan)
        log.info("resuming %s (run %s)", plan.out, run.run_id)
    for index, problem in plan.state.forget_damaged_shards().items():
        log.warning("shard %d: %s; making it again from the judgment store", index, problem)
    _write_personas(plan, run)
    plan.state.write_skipped(plan.skipped_rows)
    if not (plan.out / "README.md").exists():
        _write_text(plan.out / "README.md", card.render_in_progress(plan))
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
        meta = RunMeta(part.run_id or run.run_id, _created(part.created_at, run), JudgeInfo("", "", simulated=False))
        for j, first in enumerate(range(start, end, step)):
            personas = plan.population.personas[first : min(first + step, end)]
            shares = plan.config.output.splits  # a file per split of these personas (dataset.splits)
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


def _created(created_at: str | None, run: RunState) -> datetime:
    return datetime.fromisoformat(created_at) if created_at else run.created_at


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
    shard stays unfinished and a rerun asks again for exactly those units. With ``adaptive.enabled`` the shard
    is judged in rounds of one sample (filters/sequential.py) and holds only the units the rule asked for.
    """
    if (done := shard_report(plan, index)) is not None:
        progress.advance(progress.JUDGING, done.planned or done.units)
        return replace(done, reused=done.units)
    plan.store.recall(index)  # judged earlier in this process, and its files went missing since: its answers count
    batch = plan.batch(index)
    part = plan.layout.part_of(index)
    meta = RunMeta(part.run_id or run.run_id, _created(part.created_at, run), judge.info)
    planned = len(batch)
    saved: list[Path] = []
    batch, frame, preferences, judged = _judge_and_filter(plan, batch, plan.unit_keys(batch), judge, meta, saved)
    rows = plan.config.output.row_group_rows

    attribute_names = list(plan.population.spec.attributes)
    # a file per config and split of the shard's personas (dataset.splits), all written together
    shares = plan.config.output.splits
    start, end = part.shard_personas(index)
    names = splits.present((p.id for p in plan.population.personas[start:end]), shares)
    tables = [
        (to_arrow("judgment", rows_of, plan.struct_fields), shard_path(plan.out, "judgments", index, name))
        for name, rows_of in splits.by_split(with_source_columns(frame, plan.source_columns), shares, names)
    ] + [
        (
            to_arrow(
                "preference",
                rows_of,
                {"persona_attributes": attribute_names, **plan.struct_fields},
                messages=plan.conversational,
            ),
            shard_path(plan.out, "preferences", index, name),
        )
        for name, rows_of in splits.by_split(with_source_columns(preferences, plan.source_columns), shares, names)
    ]
    files = write_parquet_together(tables, rows)
    report = replace(
        shard_stats(index, frame, preferences),
        reused=judged.reused,
        planned=planned,
        files={path.relative_to(plan.out).as_posix(): w for (_, path), w in zip(tables, files, strict=True)},
    )
    plan.state.write_report(index, asdict(report))
    plan.store.forget(index, saved)  # the report skips this shard from now on
    return report


def _judge_and_filter(
    plan: BuildPlan, batch: UnitBatch, keys: np.ndarray, judge: Judge, meta: RunMeta, saved: list[Path] | None = None
) -> tuple[UnitBatch, pl.DataFrame, pl.DataFrame, Judged]:
    """Judge a batch (answers stored before are used, new ones saved as each micro-batch arrives), filter and
    vote: the batch of the units actually judged (adaptive sampling asks only some of the budget), their
    judgments, the preferences, and what was judged. ``saved`` gets the store segments written."""
    stored = plan.store.lookup(keys)  # judged before: by an interrupted run, or by a build with other settings
    rows = plan.config.output.row_group_rows
    asked = 0

    def save(frame: pl.DataFrame) -> None:
        nonlocal asked
        if (path := plan.store.save(keys, frame, rows)) is not None and saved is not None:
            saved.append(path)
        asked += frame.height
        progress.advance(progress.JUDGING, frame.height)

    judged = judge_in_rounds(judge, batch, stored, SequentialRule.from_config(plan.config), on_frame=save)
    # the rest of the batch is resolved too: found stored, not asked (identical texts), or left by adaptive sampling
    progress.advance(progress.JUDGING, len(batch) - asked)
    if len(judged.rows) < len(batch):
        batch = batch.take(judged.rows)
    frame = judgments_frame(batch, judged.verdicts, meta)
    frame = apply_filters(frame, filters_from_config(plan.config.filters))
    return batch, frame, preferences_frame(frame, batch, meta), judged


def _persona_free_batches(plan: BuildPlan, simulated: bool) -> Iterator[tuple[UnitBatch, np.ndarray]]:
    """The persona-free run's units, in blocks of a shard (flat memory), with their keys in the store."""
    free = persona_free(plan.population)
    # an LLM judge sees no portrayal, so its answers hold whatever the population: a grown one asks nothing
    # again; the simulator answers from the population's modal attitudes, so its key names them
    digest = record_digest(free) if simulated else content_hash("persona-free", free.portrayal, size=16)
    samples = plan.config.judge.samples
    step = pairs_per_shard(plan.config.output.units_per_shard, samples)
    for start in range(0, len(plan.pairs), step):
        batch = UnitBatch.persona_major((free,), plan.pairs[start : start + step], samples, shard=-1)
        yield batch, plan.unit_keys(batch, persona_digests=[digest])


def persona_free_votes(plan: BuildPlan, run: RunState, judge: Judge) -> pl.DataFrame:
    """The same judge's kept votes on every pair of the build without a persona (population.baseline): where the
    preference-space map places the model itself. Stored like any judgment, so a rerun asks nothing."""
    meta = RunMeta(run.run_id, run.created_at, judge.info)
    votes = []
    for batch, keys in _persona_free_batches(plan, judge.info.simulated):
        _, _, preferences, _ = _judge_and_filter(plan, batch, keys, judge, meta)
        votes.append(preferences.select("pair_id", "chosen_id", "rejected_id"))
    label = "no persona (simulator)" if judge.info.simulated else f"no persona: {judge.info.model}"
    frame = (
        pl.concat(votes)
        if votes
        else pl.DataFrame(schema={"pair_id": pl.String, "chosen_id": pl.String, "rejected_id": pl.String})
    )
    return frame.select(pl.lit(label).alias("label"), "pair_id", "chosen_id", "rejected_id")


def other_requests(plan: BuildPlan, simulated: bool) -> dict[str, dict[str, int | None]]:
    """The model requests a build made beyond its personas' judgments, whichever run made them, with their
    tokens where they are recorded: the persona-free run's (from the judgment store), the fidelity check's
    (from its answer store) and the generated responses' (from their store).
    The simulated judge asks no model."""
    from polypref.fidelity import run as fidelity_run
    from polypref.generation import load_store

    def spent(frame: pl.DataFrame) -> dict[str, int | None]:
        return {
            "requests": int(frame["attempts"].sum() or 0),
            "prompt_tokens": int(frame["prompt_tokens"].sum() or 0),
            "completion_tokens": int(frame["completion_tokens"].sum() or 0),
        }

    kinds: dict[str, dict[str, int | None]] = {}
    if not simulated:
        stored = [plan.store.lookup(keys) for _, keys in _persona_free_batches(plan, simulated)]
        kinds["persona_free"] = spent(pl.concat(stored) if stored else pl.DataFrame(schema=VERDICT_COLUMNS))
        if plan.config.fidelity.check:
            kinds["fidelity_questions"] = fidelity_run.spent(plan)
    if plan.config.generate is not None:
        ids = [r.id for item in plan.items for r in item.responses]
        rows = load_store(plan.state.generated_dir).filter(pl.col("response_id").is_in(ids))
        kinds["generation"] = spent(rows.sort("attempts").unique("response_id", keep="last"))  # runs add up in a row
    return kinds


def finalize(
    plan: BuildPlan,
    run: RunState,
    reports: list[ShardReport],
    judge: JudgeInfo,
    persona_free: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Write the weights, review candidates and preference-space map (over the whole dataset), the dataset card
    and the build summary; return the summary. ``persona_free``: the judge's votes without a persona
    (persona_free_votes), placed on the map."""
    from polypref.analysis import evaluate as evaluation
    from polypref.analysis.calibration import calibration_report
    from polypref.analysis.preference_map import dataset_map, render_png

    if sorted(r.index for r in reports) != list(range(plan.num_shards)):
        raise RuntimeError(f"finalize needs all {plan.num_shards} shard reports, got {len(reports)}")
    # over every shard: a refresh's new personas change every tier and every group's split
    meta = RunMeta(run.run_id, run.created_at, judge)
    spec = plan.population.spec
    written: dict[Path, WrittenFile] = {}
    _write_pairs(plan, meta, written)
    counts = _write_weights_and_review(plan, meta, written)
    counts["distributions"] = _write_distributions(plan, meta, written)
    counts["episodes"] = _write_episodes(plan, meta, written)
    points = dataset_map(plan.out, persona_free)
    path = shard_path(plan.out, "map", 0)
    written[path] = write_parquet(to_arrow("map", stamped(points, meta)), path, plan.config.output.row_group_rows)
    plan.state.drop_unwritten(FINAL_CONFIGS, written)
    plan.state.record_files(written)
    render_png(points, plan.out / MAP_PNG, plan.config.output.pretty_name)
    summary = (
        summarize(plan, run, reports, judge, other_requests(plan, judge.simulated))
        | counts
        | {
            # over every shard's preferences: the confidence column measured against truth, where there is any
            "calibration": calibration_report(plan.out, judge),
            "map": points.height,  # rows, as for every config (the card's dataset_info reads them)
            "preference_map": map_summary(points),
            "representatives": representatives_summary(plan.population),
            # the shares and each config's rows per split: the card declares the splits that have rows
            "splits": splits.summary(plan.out, plan.config.output.splits, CONFIGS),
            # how much a persona's own labels say beyond the population's, on the held-out personas
            "personalization": evaluation.for_card(
                plan.out, plan.config.output.splits, {t: spec.scale(t) for t in spec.attitudes.items}
            ),
        }
    )
    _write_text(plan.out / "README.md", card.render(plan, summary))
    plan.state.write_summary(summary)
    return summary


def _write_distributions(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> int:
    """The distributions config, a file per split of the population (each split's personas alone); its rows."""
    names = list(plan.split_names)
    tables = [
        (to_arrow("distribution", stamped(rows, meta)), shard_path(plan.out, "distributions", 0, name))
        for name, rows in dataset_distributions(plan.out, names).items()
    ]
    made = write_parquet_together(tables, plan.config.output.row_group_rows)
    written.update(zip([path for _, path in tables], made, strict=True))
    return sum(w.rows for w in made)


def _write_episodes(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> int | None:
    """The episodes config (output.episodes), a file per split of the preferences; its rows, None when off."""
    settings = plan.config.output.episodes
    if settings is None:
        return None
    fields = {"persona_attributes": list(plan.population.spec.attributes)}
    rows = 0
    for name in plan.split_names:
        files = splits.split_files(plan.out / "data" / "preferences", [name])

        def parts(files: list[Path] = files) -> Iterator[pa.Table]:
            yield arrow_schema("episode", fields, plan.conversational).empty_table()  # the schema, if no rows
            for part in split_episodes(files, settings.shots, settings.seed):
                yield to_arrow("episode", stamped(part, meta), fields, messages=plan.conversational)

        path = shard_path(plan.out, "episodes", 0, name)
        written[path] = write_parquet_parts(parts(), path, plan.config.output.row_group_rows)
        rows += written[path].rows
    return rows


PAIRS_PER_PART = 100_000  # pairs made into rows at a time: a source of 10^6 items stays flat


def _write_pairs(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> None:
    """The pairs config: every pair of the build with its texts, in one file written part by part."""

    def parts() -> Iterator[pa.Table]:
        for start in range(0, max(len(plan.pairs), 1), PAIRS_PER_PART):  # no pair: the schema alone
            rows = with_source_columns(
                pair_rows(plan.pairs[start : start + PAIRS_PER_PART], plan.conversational), plan.source_columns
            )
            yield to_arrow("pair", stamped(rows, meta), plan.struct_fields, messages=plan.conversational)

    path = shard_path(plan.out, "pairs", 0)
    written[path] = write_parquet_parts(parts(), path, plan.config.output.row_group_rows)


def _write_weights_and_review(plan: BuildPlan, meta: RunMeta, written: dict[Path, WrittenFile]) -> dict[str, Any]:
    """Write the weights and review configs, one at a time (each has a row per preference, so neither is kept
    while the other is made; the weights are written in parts); return what the summary says of them. Adds
    what each file holds to ``written``."""
    personas = []
    # a file per split of the population's personas (dataset.splits), computed over the whole dataset as before
    shares, names = plan.config.output.splits, plan.split_names

    def parts() -> Iterator[dict[str, pa.Table]]:
        empty = to_arrow("weight", stamped(pl.DataFrame(schema=WEIGHT_COLUMNS), meta))
        yield dict.fromkeys(names, empty)  # the schema, if no rows
        # about 250,000 rows (whole personas) at a time: 10^7 stay flat
        for part in dataset_weights(plan.out, plan.config.weights):
            personas.append(part["persona_id"].n_unique())
            yield {name: to_arrow("weight", stamped(f, meta)) for name, f in splits.by_split(part, shares, names)}

    rows = plan.config.output.row_group_rows
    weights = {name: shard_path(plan.out, "weights", 0, name) for name in names}
    made = write_parquet_parts_together(parts(), weights, rows)
    written.update(made)
    counts: dict[str, Any] = {"weights": sum(w.rows for w in made.values()), "personas_with_preferences": sum(personas)}
    review = dataset_review(plan.out)
    tables = [
        (to_arrow("review", stamped(f, meta)), shard_path(plan.out, "review", 0, name))
        for name, f in splits.by_split(review, shares, names)
    ]
    written.update(zip([path for _, path in tables], write_parquet_together(tables, rows), strict=True))
    reasons = dict(review["reason"].value_counts().sort("reason").iter_rows())
    return counts | {"review": review.height, "review_reasons": reasons}


def map_summary(points: pl.DataFrame) -> dict[str, Any]:
    """What the card says about the map: how much the axes explain, and where the persona-free runs landed."""
    runs = points.filter(pl.col("kind") == "persona-free")
    return {
        "personas": points.height - runs.height,
        "explained": [round(float(points[c][0]), 4) if points.height else 0.0 for c in ("explained_x", "explained_y")],
        "persona_free": [
            {"label": r["point_id"], "x": round(r["x"], 3), "y": round(r["y"], 3), "pairs": r["n_pairs"]}
            for r in runs.iter_rows(named=True)
        ],
    }


def _write_text(path: Path, text: str) -> None:
    write_bytes(text.encode("utf-8"), path)
