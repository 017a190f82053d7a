"""Planning a build: every input validated, the population sampled, the shards laid out; nothing written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl

from polypref.build.fingerprint import build_fingerprint, data_settings, input_files, judge_key, judging_templates
from polypref.build.layout import lay_out
from polypref.build.plan import BuildPlan
from polypref.build.state import BuildState
from polypref.config import POPULATION_LIMIT, BuildConfig
from polypref.dataset.tables import conversational
from polypref.errors import ConfigError
from polypref.generation import plan_slots
from polypref.items import make_pairs, read_items
from polypref.items.sources import LoadedItems, check_judgeable
from polypref.pipeline.checks import check_before_work
from polypref.population import Population, load_spec, sample_population
from polypref.population.representatives import represent
from polypref.population.spec import SurveySpec
from polypref.records import Item, content_hash, record_digest

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
    loaded, items = _items(config, source, spec)
    pairs = make_pairs(items, config.items.pairing, config.items.pairs_per_prompt, config.seed)
    fingerprint, source_columns = _fingerprint(config, spec, loaded)
    state = BuildState(out)
    previous = None if overwrite else state.read_layout(fingerprint)
    as_messages = conversational(pairs)
    if previous is not None and state.published_as_messages() not in (None, as_messages):
        # one column holds one type: shards kept as they are would not load beside the new ones
        kind = "messages" if as_messages else "plain text"
        log.warning("%s: these items publish as %s, unlike its shards; all are made again from the store", out, kind)
        previous = None
    added = _added_personas(config, out, source, state, add_personas, overwrite, grows=previous is not None)
    population = _population(config, spec, source, added)
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


def _items(config: BuildConfig, source: str, spec: SurveySpec) -> tuple[LoadedItems, tuple[Item, ...]]:
    """The items read and checked for the judge; a prompts-only source's final response ids when generating."""
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
    return loaded, items


def _fingerprint(config: BuildConfig, spec: SurveySpec, loaded: LoadedItems) -> tuple[str, pl.DataFrame | None]:
    """The build's fingerprint, and the source columns the shards keep (which are part of it)."""
    fingerprint = build_fingerprint(config, spec)
    if loaded.kept is None:
        return fingerprint, None
    key, *names = loaded.kept.columns
    source_columns = loaded.kept.select(pl.col(key).alias("prompt_id"), pl.struct(names).alias("source_columns"))
    # shards hold the kept values: other names or values are another dataset, made again from the store
    # (a digest polars may compute otherwise in another version: then the shards are made again, no request)
    return content_hash(fingerprint, names, int(loaded.kept.hash_rows(seed=0).sum()), size=16), source_columns


def _added_personas(
    config: BuildConfig,
    out: str | Path,
    source: str,
    state: BuildState,
    add_personas: int,
    overwrite: bool,
    grows: bool,
) -> int:
    """Personas past population.size: those the folder's refreshes added, and ``add_personas`` more."""
    added = 0 if overwrite else state.added_personas()
    if add_personas and grows and state.unfinished():
        # a refresh that was stopped: finish it, rather than grow again by the same amount (next run grows)
        log.warning("%s holds an unfinished run: finishing it; --add-personas applies to the next run", out)
    else:
        added += add_personas
    size = config.population.size + added
    if size > POPULATION_LIMIT:
        raise ConfigError(source, [("population.size", f"growing to {size} personas passes {POPULATION_LIMIT}")])
    if config.population.representatives is not None and add_personas:
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
    return added


def _population(config: BuildConfig, spec: SurveySpec, source: str, added: int) -> Population:
    population = sample_population(
        spec,
        config.population.size + added,
        config.population.allocation,
        config.seed,
        source=source,
        counts_for=config.population.size,
    )
    k = config.population.representatives
    return population if k is None else represent(population, k, config.seed)  # only they are judged
