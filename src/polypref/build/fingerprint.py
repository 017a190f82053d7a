"""What a build's data depends on, as two hashes.

``build_fingerprint``: the settings a shard's rows depend on besides which personas and pairs it covers (seed,
population spec and allocation, judge, filters, shard size, the spec and survey bytes, the templates, the code).
A folder built with the same fingerprint can be resumed or grown; one with another is rebuilt, from the store.

``judge_key``: what decides one judge's answer to one unit (backend and sampling settings, seed, templates,
portrayal settings, judging code): the judgment store's namespace, so a stored answer is reused exactly when the
same judge would give it again.

Neither includes settings that change how fast or where the work runs, or only the card's wording
(concurrency, timeouts, retries, micro-batch size, GPU memory, endpoint URL, workers, licence, title, where to
publish), so changing one resumes.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from polypref import SCHEMA_VERSION, __version__, assets, generation, prompts
from polypref.analysis.calibration import SHIPPED
from polypref.config import BuildConfig
from polypref.judges.base import RUN_SETTINGS
from polypref.judges.llm import PAIR_TEMPLATE, SYSTEM_TEMPLATE
from polypref.population import portrayal
from polypref.population.spec import SurveySpec, resolve_spec_path
from polypref.population.survey import source_file

# Per config section: fields that do not change any row of the dataset. The items section's say where and how to
# read; what was read enters the hash instead (the file bytes, the format and columns found, the items kept), so
# the same data under another spelling (a tag for the same commit, a limit past the row count) resumes.
OPERATIONAL: dict[str, frozenset[str]] = {
    "items": frozenset({"source", "format", "columns", "config", "split", "revision", "limit"}),
    # episodes are made anew from the preferences at each build's end: no shard holds one
    "output": frozenset({"workers", "row_group_rows", "pretty_name", "license", "episodes"}),
    # judge.templates is where the user's templates lie: their content enters instead (judging_templates), so a
    # moved folder resumes and an edited template does not
    "judge": RUN_SETTINGS | {"templates"},
    "publish": frozenset({"repo", "private", "revision"}),  # where a finished build goes, not what it holds
    # a check before judging: its figures go into the card, never into a row
    "fidelity": frozenset({"check", "topics", "personas", "gate", "max_tvd", "min_alignment", "max_excess_tvd"}),
    # the weights config is computed anew over every shard at each build's end: no shard holds a weight
    "weights": frozenset({"alpha", "beta", "tiers", "missing_as_dissent"}),
}


def data_settings(config: BuildConfig) -> dict[str, Any]:
    """The config without its operational settings."""
    dumped = config.model_dump(mode="python")
    dumped.pop("runner")  # where the shards run, never what they hold
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


def build_fingerprint(config: BuildConfig, spec: SurveySpec) -> str:
    """What decides a shard's rows besides which personas and pairs it covers: the settings, the spec and
    survey bytes, the templates and the code.

    The population's size and the items are left out: the personas and pairs themselves are compared by
    content (build.layout), so a build that only grows (more personas, more items) keeps its shards, and one
    whose items changed is rebuilt from the judgment store.
    """
    settings = data_settings(config)
    settings["population"].pop("size")
    settings.pop("items")
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in input_files(config, spec):
        h.update(file_digest(path).encode())
    for name, digest in judging_templates(config, spec).items():
        h.update(f"{name}:{digest}".encode())
    h.update(file_digest(calibrator_file()).encode())  # a refit calibrator gives every preference another confidence
    h.update(f"{__version__}/{SCHEMA_VERSION}/{code_digest()}".encode())
    return h.hexdigest()[:16]


def judge_key(config: BuildConfig, spec: SurveySpec) -> str:
    """Identity of a judge as the judgment store keys it: everything that decides an answer besides the unit
    (persona, pair, order, sample): backend and settings, the seed, the portrayal and prompt templates, how
    portrayals are shown, and the judging code. Not the number of samples: sample k is the same judgment
    whether 1 or 3 are asked for."""
    ignored = OPERATIONAL["judge"] | {"samples"}
    judge = {k: v for k, v in config.judge.model_dump(mode="python").items() if k not in ignored}
    settings = {
        "judge": judge,
        "seed": config.seed,
        "portrayal": config.portrayal.model_dump(mode="python"),
        "templates": judging_templates(config, spec),
        "code": code_digest(JUDGING_CODE[config.judge.backend]),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def judging_templates(config: BuildConfig, spec: SurveySpec) -> dict[str, str]:
    """The templates a judgment is rendered from, name -> hash of the text actually used: the spec's portrayal
    (its own file, or the shipped one) and the judge's prompts (from judge.templates where that folder has them)."""
    user = getattr(config.judge, "templates", None)
    return {
        spec.portrayal: portrayal.template_hash(spec.portrayal, spec.path),
        **{name: prompts.template_hash(name, user) for name in (SYSTEM_TEMPLATE, PAIR_TEMPLATE)},
    }


# The code that decides what a row holds. The CLI, the flow, reports, the card, state and file writing do not:
# changing them (a new release that fixes the progress bar) must not strand a half-finished paid build.
DATA_CODE = (
    "judges",
    "llms",
    "generation",
    "filters",
    "population",
    "items",
    "records.py",
    "pipeline",
    "prompts.py",
    "files.py",
    "dataset/tables.py",
    "dataset/schema.py",
    "dataset/row_models.py",  # the schemas' models (an episode's label fields)
    "analysis/calibration.py",  # a preference's confidence
    "analysis/scaling.py",  # its fitted maps (Platt, isotonic)
    "splits.py",  # which split's file a shard's row is in
    "build/plan.py",  # a shard's units: personas, pairs, orders, samples
    "build/layout.py",  # which shards hold which personas and pairs
)


# The code that decides what a judge answers for one unit, per backend: a change there retires that backend's
# stored judgments and no other's (refactoring the simulator must not strand a paid LLM build). Not how requests
# are sent (llms/openai.py, openai_live.py, openai_batch.py: retries, batching; llms/ratelimit.py, llms/probe.py):
# fixing that changes no answer. llms/base.py holds the LLM settings, the request and the verdict's schema.
_JUDGING_SHARED = ("judges/base.py", "prompts.py", "records.py", "population/portrayal.py")
_LLM_JUDGING = ("judges/llm.py", "judges/parsing.py", "llms/base.py")
JUDGING_CODE: dict[str, tuple[str, ...]] = {
    "simulated": (*_JUDGING_SHARED, "judges/simulated.py"),
    "vllm": (*_JUDGING_SHARED, *_LLM_JUDGING, "llms/vllm.py"),
    "openai": (*_JUDGING_SHARED, *_LLM_JUDGING, "llms/openai_wire.py"),
}

# Inside DATA_CODE's folders, code that never runs in a build (drafting a spec for the user to edit).
NOT_DATA_CODE = frozenset(
    {
        "population/draft.py",  # `polypref init-spec`
        "population/draft_guesses.py",
        "population/draft_variables.py",
        "generation/annotate.py",  # `polypref annotate`: writes an items file, never a row
        "pipeline/fidelity.py",  # the fidelity check: its own report, keyed apart (fidelity/report.py)
        "items/hub_errors.py",  # the wording of the Hub's refusals
    }
)


@cache
def code_digest(names: tuple[str, ...] = DATA_CODE) -> str:
    """Hash of the polypref code that decides rows: shards built by different such code are different builds."""
    package = Path(__file__).resolve().parent.parent  # src/polypref
    missing = [name for name in names if not (package / name).exists()]
    assert not missing, f"fingerprinted code moved: {missing}"  # a stale name would drop that code from the hash
    paths = [
        p
        for name in names
        for p in ([package / name] if name.endswith(".py") else (package / name).rglob("*.py"))
        if p.relative_to(package).as_posix() not in NOT_DATA_CODE
    ]
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def calibrator_file() -> Path:
    return assets.path("data", *SHIPPED)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
