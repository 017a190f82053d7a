"""What a build's data depends on, as one hash: a resumed build may only continue shards of the same hash.

In: every config value that changes a row (seed, population, items, judge model and sampling, filters, shard
layout), the bytes of the spec, the items and the survey table, the templates that make portrayals and prompts,
and the code. Out: settings that change how fast or where the work runs, or only the card's wording
(concurrency, timeouts, retries, micro-batch size, GPU memory, endpoint URL, workers, licence, title), so
changing one resumes instead of forcing --overwrite.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from polypref import SCHEMA_VERSION, __version__, generation, prompts
from polypref.config import BuildConfig
from polypref.judges.base import RUN_SETTINGS
from polypref.judges.llm import PAIR_TEMPLATE, SYSTEM_TEMPLATE
from polypref.population.spec import SurveySpec, resolve_spec_path
from polypref.population.survey import source_file

# Per config section: fields that do not change any row of the dataset. The items section's say where and how to
# read; what was read enters the hash instead (the file bytes, the format and columns found, the items kept), so
# the same data under another spelling (a tag for the same commit, a limit past the row count) resumes.
OPERATIONAL: dict[str, frozenset[str]] = {
    "items": frozenset({"source", "format", "columns", "config", "split", "revision", "limit"}),
    "output": frozenset({"workers", "row_group_rows", "pretty_name", "license"}),
    "judge": RUN_SETTINGS,
}


def data_settings(config: BuildConfig) -> dict[str, Any]:
    """The config without its operational settings."""
    dumped = config.model_dump(mode="python")
    for section, names in OPERATIONAL.items():
        dumped[section] = {k: v for k, v in dumped[section].items() if k not in names}
    if dumped.get("generate"):  # a list of generators: the same rule per entry, with generation's own list
        dumped["generate"]["generators"] = [
            {k: v for k, v in g.items() if k not in generation.OPERATIONAL} for g in dumped["generate"]["generators"]
        ]
    return dumped


def input_files(config: BuildConfig, spec: SurveySpec) -> tuple[Path, Path]:
    """The files a build reads besides its items: its population spec and its survey table."""
    return resolve_spec_path(config.population.spec), source_file(spec)


def build_fingerprint(
    config: BuildConfig, spec: SurveySpec, item_files: Sequence[Path] = (), items_read: Any = None
) -> str:
    """``item_files``: the files the items were read from (for a Hub source, the downloaded copies);
    ``items_read``: what reading them gave (format, columns, the ids of the items kept)."""
    settings = {"config": data_settings(config), "items_read": items_read}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in (*input_files(config, spec), *item_files):
        h.update(_file_digest(path).encode())
    for name in (spec.portrayal, SYSTEM_TEMPLATE, PAIR_TEMPLATE):
        h.update(f"{name}:{prompts.template_hash(name)}".encode())
    h.update(f"{__version__}/{SCHEMA_VERSION}/{code_digest()}".encode())
    return h.hexdigest()[:16]


# The code that decides what a row holds. The CLI, the flow, reports, the card, state and file writing do not:
# changing them (a new release that fixes the progress bar) must not strand a half-finished paid build.
DATA_CODE = (
    "judges",
    "generation",
    "filters",
    "population",
    "items",
    "records.py",
    "pipeline.py",
    "prompts.py",
    "files.py",
    "dataset/tables.py",
    "dataset/schema.py",
)


# Inside DATA_CODE's folders, code that never runs in a build (drafting a spec for the user to edit).
NOT_DATA_CODE = frozenset({"population/draft.py"})


@cache
def code_digest() -> str:
    """Hash of the polypref code that decides rows: shards built by different such code are different builds."""
    package = Path(__file__).resolve().parent
    paths = [
        p
        for name in DATA_CODE
        for p in ([package / name] if name.endswith(".py") else (package / name).rglob("*.py"))
        if p.relative_to(package).as_posix() not in NOT_DATA_CODE
    ]
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
