"""The dataset card (README.md with YAML `configs:`), rendered from schemas/dataset_card.md.j2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from polypref import SCHEMA_VERSION, __version__, prompts, splits
from polypref.analysis import evaluate as evaluation
from polypref.assets import json_schema
from polypref.build.documents import Summary
from polypref.dataset.configs import CONFIGS
from polypref.fidelity import report as fidelity

if TYPE_CHECKING:
    from polypref.build.plan import BuildPlan

SCHEMA_OF = {
    "preferences": "preference",
    "judgments": "judgment",
    "personas": "persona",
    "pairs": "pair",
    "weights": "weight",
    "review": "review",
    "map": "map",
    "distributions": "distribution",
    "episodes": "episode",
}


def _columns(config: str) -> list[dict[str, str]]:
    props = json_schema(SCHEMA_OF[config])["properties"]
    return [{"name": k, "description": v.get("description", "")} for k, v in props.items()]


def _configs(
    declared: tuple[str, ...] = CONFIGS, rows: dict[str, dict[str, int]] | None = None
) -> list[dict[str, Any]]:
    """Each config's data_files: with ``rows`` (a finished build's rows per config and split), one pattern per
    split that has rows (`datasets` cannot load a config with a pattern that matches no file, nor a split of no
    rows); without, every file written so far as one split, train (a build in progress)."""
    return [
        {
            "config_name": c,
            "data_files": [{"split": s, "path": f"data/{c}/{s}-*.parquet"} for s in _splits_of(c, rows)]
            if rows is not None
            else [{"split": "train", "path": f"data/{c}/*.parquet"}],
            **({"default": True} if c == "preferences" else {}),
        }
        for c in declared
    ]


def _splits_of(config: str, rows: dict[str, dict[str, int]]) -> list[str]:
    """The splits of a config that hold rows, train first."""
    return [s for s in splits.NAMES if rows.get(config, {}).get(s)] or ["train"]


def _split_rows(summary: Summary) -> dict[str, dict[str, int]]:
    """Rows per config and split (a summary without them, of an older version: everything in train)."""
    recorded = summary.split_rows()
    return recorded if recorded is not None else {c: {"train": summary.rows(c) or 0} for c in CONFIGS}


def built_configs(summary: Summary) -> tuple[str, ...]:
    """The configs the build wrote: every one but an optional config that is off (its count is None)."""
    return tuple(c for c in CONFIGS if summary.rows(c) is not None)


def declared_configs(summary: Summary) -> tuple[str, ...]:
    """The configs a finished build's card declares: those with rows. `datasets` cannot load a split of no rows
    ('corresponds to no data'), locally or from the Hub, so an empty config (its file holds the schema) is named
    in the card's text instead."""
    return tuple(c for c in built_configs(summary) if summary.rows(c))


def render_in_progress(plan: BuildPlan) -> str:
    """The card of a build still running: its configs, so the shards done so far load by config name."""
    meta = {"pretty_name": plan.config.output.pretty_name, "license": plan.config.output.license, "configs": _configs()}
    return (
        f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n"
        f"# {plan.config.output.pretty_name}\n\n"
        "**Build in progress.** The shards written so far load with `datasets.load_dataset(folder, config)`, "
        "every split together as `train`; this card is replaced by the full one, which declares the splits, when "
        "the build finishes. Rerun the same `polypref build` to resume.\n"
    )


def front_matter(plan: BuildPlan, summary: Summary) -> str:
    n = summary.preferences or 0
    size = next(
        label
        for limit, label in (
            (1e3, "n<1K"),
            (1e4, "1K<n<10K"),
            (1e5, "10K<n<100K"),
            (1e6, "100K<n<1M"),
            (1e7, "1M<n<10M"),
            (float("inf"), "n>10M"),
        )
        if n < limit
    )
    tags = ["synthetic", "preference", "persona", "dpo", "polypref"]
    if summary.judge.get("simulated"):
        tags.append("simulated")
    declared = declared_configs(summary)
    rows = _split_rows(summary)
    meta = {
        "pretty_name": plan.config.output.pretty_name,
        "license": plan.config.output.license,
        "language": ["en"],
        "tags": tags,
        "size_categories": [size],
        "configs": _configs(declared, rows),
        # Row counts and file sizes per config. Besides informing readers, they make `datasets` cache each
        # build apart: it keys a local folder's cache by folder name and this metadata, not by the files, so
        # without it a second build in a folder called `out` loaded the first build's cached rows.
        "dataset_info": [
            {
                "config_name": c,
                "splits": [
                    {"name": s, "num_bytes": plan.state.data_bytes(c, s), "num_examples": rows[c][s]}
                    for s in _splits_of(c, rows)
                ],
                "download_size": plan.state.download_size(c),
            }
            for c in declared
        ],
    }
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def _config_used(plan: BuildPlan) -> dict[str, Any]:
    """The config, with the population size the folder holds (a refresh's --add-personas grows it)."""
    used = plan.config.model_dump(mode="json")
    used["population"]["size"] = plan.config.population.size + plan.added_personas
    return used


def _runs(plan: BuildPlan, summary: Summary) -> list[dict[str, Any]]:
    """The runs that built the folder, oldest first: which personas and pairs each added, in which shards."""
    return [
        {
            "run_id": part.run_id or summary.run_id,
            "created_at": part.created_at or summary.created_at,
            "personas": f"{part.personas[0] + 1}-{part.personas[1]}",
            "pairs": len(part.pairs),
            "shards": f"{part.first_shard}-{part.first_shard + part.num_shards - 1}",
        }
        for part in plan.layout.parts
    ]


def _splits_view(plan: BuildPlan, summary: Summary) -> dict[str, Any]:
    """What the card's Splits section shows: the shares, and each per-persona config's rows per split."""
    shares = plan.config.output.splits
    rows = _split_rows(summary)
    return {
        "shares": {s: shares[s] for s in splits.NAMES if shares.get(s, 0) > 0},
        "names": [s for s in splits.NAMES if any(rows.get(c, {}).get(s) for c in splits.PERSONA_CONFIGS)],
        "rows": {c: rows.get(c, {}) for c in built_configs(summary) if c not in splits.WHOLE_CONFIGS},
        "whole": [c for c in built_configs(summary) if c in splits.WHOLE_CONFIGS],
    }


def render(plan: BuildPlan, summary: Summary | Mapping[str, Any]) -> str:
    """The card of a finished build; ``summary`` as ``pipeline.finalize`` returns it (its JSON) or typed."""
    summary = summary if isinstance(summary, Summary) else Summary.from_json(summary)
    population = plan.population
    groups = [
        {"name": g, "share": population.group_shares[g], "personas": population.group_counts[g]}
        for g in population.group_shares
    ]
    return (
        prompts.environment("schemas")
        .get_template("dataset_card.md.j2")
        .render(
            front_matter=front_matter(plan, summary),
            summary=summary,
            config=plan.config,
            config_yaml=yaml.safe_dump(_config_used(plan), sort_keys=False).strip(),
            runs=_runs(plan, summary),
            spec=population.spec,
            population=population,
            groups=groups,
            columns={c: _columns(c) for c in built_configs(summary)},
            empty=[c for c in built_configs(summary) if c not in declared_configs(summary)],
            version=__version__,
            schema_version=SCHEMA_VERSION,
            fidelity=fidelity.as_card(fidelity.current_report(plan)),
            splits=_splits_view(plan, summary),
            personalization=evaluation.markdown(summary.personalization or {"skipped": "not measured"}),
        )
        + "\n"
    )
