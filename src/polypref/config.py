"""The build config: one YAML file, validated by pydantic with unknown keys forbidden."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from polypref import assets, files, splits
from polypref.errors import ConfigError
from polypref.filters.config import AdaptiveConfig, FiltersConfig
from polypref.generation import GenerateConfig
from polypref.items.config import ItemsConfig
from polypref.judges.simulated import SimulatedJudgeConfig
from polypref.llms.openai_wire import OpenAIJudgeConfig
from polypref.llms.vllm import VllmJudgeConfig
from polypref.safety.provenance import public
from polypref.strict import StrictModel

# Sections owned by their packages (the config assembles them; importable from here as before).
__all__ = ["AdaptiveConfig", "BuildConfig", "FiltersConfig", "ItemsConfig", "load_config"]

# One judge section per backend; `backend` picks which (adding a backend: a module and a line here).
JudgeConfig = Annotated[SimulatedJudgeConfig | VllmJudgeConfig | OpenAIJudgeConfig, Field(discriminator="backend")]


POPULATION_LIMIT = 1_000_000


class PopulationConfig(StrictModel):
    spec: str = Field("gss_spending", description="A spec name in personas/ or a path to a spec YAML file")
    # personas are held in memory (~6.5 KB each, 1M in ~6.5 GB and a minute): past this, a machine runs out
    size: int = Field(200, ge=1, le=POPULATION_LIMIT, description="Number of personas to sample (at most 1,000,000)")
    allocation: Literal["proportional", "equal"] | dict[str, float] = Field(
        "proportional",
        description="Personas per group: proportional to the weighted survey shares, equal, "
        "or a mapping group -> count (integers summing to size) or -> proportion (summing to 1)",
    )
    accept_terms: bool = Field(
        False, description="Required for specs whose source restricts commercial use or redistribution"
    )
    representatives: StrictInt | None = Field(
        None,
        ge=1,
        le=POPULATION_LIMIT,
        description="Judge at most this many representative personas per group instead of every sampled one: "
        "each group's sampled personas are clustered on their attitudes (k-medoids) and each cluster's medoid, "
        "a real sampled respondent, is judged with its cluster's summed weight (None = judge every persona)",
    )


class PortrayalConfig(StrictModel):
    hold_out_judged_topic: bool = Field(
        True,
        description="Leave the persona's own answer on an item's topic out of the portrayal it judges that item "
        "with, so the verdict comes from role-play rather than from reading the answer",
    )


class WeightsConfig(StrictModel):
    """Fair-PP's sample reweighting (dataset/weights.py). The defaults reproduce Fair-PP's notebook on data of its
    shape (a few personas, tiers 1-P); ``tiers`` bins a large population's disagreement so ``beta`` still acts."""

    # at most 10: (1 / 10^6 personas)^10 x (1 / 10^7 rows)^10 still holds in a float, so no weight becomes 0
    alpha: float = Field(
        1.0, ge=0, le=10, description="Exponent of tier / P: how much more the rows where a persona stands apart weigh"
    )
    beta: float = Field(
        1.0, ge=0, le=10, description="Exponent of 1 / (the persona's rows in the tier): how far tier sizes even out"
    )
    missing_as_dissent: bool = Field(
        True,
        description="A persona with preferences but none kept on a pair counts as answering that pair differently, "
        "as Fair-PP counts an N/A answer (false: tiers compare only the personas with a kept preference on the pair)",
    )
    tiers: StrictInt | None = Field(
        7,
        ge=1,
        le=1_000_000,
        description="Bin the raw tiers into this many tiers of about equal rows (quantiles of the rows' disagreement, "
        "numbered 1..tiers) when there are more distinct raw tiers than this; fewer are kept as they are, so 7 "
        "personas keep Fair-PP's tiers exactly (null: always raw tiers, about one row each with hundreds of personas)",
    )


class EpisodesConfig(StrictModel):
    # strict: a YAML `true` is not 1 shot
    shots: int = Field(
        8, strict=True, ge=1, le=10_000, description="Preferences per persona given as shots; the rest are queries"
    )
    seed: int = Field(0, strict=True, ge=0, description="Orders each persona's preferences (which become shots)")


class OutputConfig(StrictModel):
    units_per_shard: int = Field(50_000, ge=1, description="Judgments per work shard (and Parquet shard)")
    row_group_rows: int = Field(50_000, ge=1_000, le=1_000_000, description="Rows per Parquet row group")
    workers: int = Field(2, ge=1, le=256, description="Shards judged at the same time")
    pretty_name: str = "polypref persona preferences"
    license: str = Field("other", description="Dataset licence for the card (check the survey's terms)")
    splits: dict[str, Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: dict(splits.DEFAULT_SHARES),
        description="Share of personas in each split (train, validation, test; shares sum to 1): whole personas, "
        "by a stable hash of persona_id, so a persona never changes split as the population grows",
    )

    episodes: EpisodesConfig | None = Field(
        None,
        description="Also write the episodes config (FSPO's few-shot layout): per persona with more than `shots` "
        "preferences, `shots` of them with their texts and the rest as queries; null: none",
    )

    @field_validator("splits")
    @classmethod
    def _split_shares(cls, value: dict[str, float]) -> dict[str, float]:
        return splits.check_shares(value)


class RunnerConfig(StrictModel):
    """Where the shards are judged. Never part of what a build holds: any runner builds the same rows."""

    # the kinds of runners.RUNNERS, which this layer cannot import (tests/unit/runners/test_runner_registry.py keeps
    # them in step); listed here, they are what validation accepts and what the config's errors and schema name
    kind: Literal["local", "workpool", "ray"] = Field(
        "local",
        description="local: output.workers threads in this process; workpool: output.workers flow runs on a "
        "Prefect work pool (PREFECT_API_URL set; start one worker per GPU); ray: output.workers Prefect tasks on "
        "a Ray cluster through prefect-ray. Each worker loads its judge once and takes shard after shard",
    )
    pool: str = Field("polypref", min_length=1, description="workpool: the Prefect work pool (made if missing)")
    ray_address: str | None = Field(
        None, description="ray: the cluster to join (ray://HOST:10001 or auto); null starts a local one"
    )
    gpus_per_worker: float = Field(0, ge=0, description="ray: GPUs each worker reserves (1 for a vLLM judge)")
    lease_s: float = Field(
        60, ge=1, le=3600, description="A worker silent this long is taken for dead; another takes over its shard"
    )
    poll_s: float = Field(2, gt=0, le=60, description="How often a worker with nothing to claim looks again")

    @model_validator(mode="after")
    def _ray_gpus(self) -> RunnerConfig:
        if self.kind != "ray" and self.gpus_per_worker:
            raise ValueError(
                "gpus_per_worker is for kind: ray (a work pool's workers are pinned by their own CUDA_VISIBLE_DEVICES)"
            )
        return self


class PublishConfig(StrictModel):
    repo: str | None = Field(
        None,
        description="Hub dataset repo (ORG/NAME) that each finished build is pushed to, as `polypref push` does "
        "(HF_TOKEN from the environment); null keeps the build local",
    )
    private: bool = Field(False, description="Create the repo private (an existing repo keeps its visibility)")
    revision: str = Field("main", min_length=1, description="Branch to push to")

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(value)
        except HFValidationError as e:
            raise ValueError(str(e).split("\n")[0]) from None
        if value.count("/") != 1:
            raise ValueError("expected ORG/NAME, e.g. my-org/persona-prefs")
        return value


class FidelityConfig(StrictModel):
    check: bool = Field(
        True,
        description="Before judging, ask the personas the survey's own questions (their answer held out) and "
        "score them against the survey's distributions in the card; LLM judges: topics x samples short requests per "
        "persona asked",
    )
    topics: list[str] | None = Field(None, min_length=1, description="Attitudes to ask about (null: all the spec's)")
    personas: int | None = Field(
        None, ge=1, description="Ask n personas, spread evenly across groups (null: as many as `budget` allows)"
    )
    budget: float | None = Field(
        0.1,
        gt=0,
        le=10,
        description="LLM judges, with personas null: ask at most this many fidelity requests per planned judgment "
        "(0.1: a tenth of the judging's requests), personas spread evenly across groups, at least one per group; "
        "null: every persona",
    )
    samples: int = Field(
        5,
        ge=1,
        le=100,
        description="LLM judges: answers drawn per question, at `temperature`, so each persona (and the persona-free "
        "model) answers with a distribution, not one greedy answer; 1: one greedy answer",
    )
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature of the draws when samples > 1")
    gate: bool = Field(
        False,
        description="Stop the build before judging when the personas score worse than max_tvd, min_alignment or "
        "max_excess_tvd",
    )
    max_tvd: float = Field(0.2, ge=0, le=1, description="Gate: highest total variation distance allowed (overall)")
    min_alignment: float = Field(0.0, ge=0, le=1, description="Gate: lowest alignment allowed (overall)")
    max_excess_tvd: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Gate: highest overall TVD allowed above the floor, the personas' own survey answers scored the "
        "same way (null: not gated); when set, it replaces max_tvd. A raw TVD gate mostly measures sampling noise: "
        "at 200 personas the groups' floors alone are 0.11-0.28; the excess is what role-play adds",
    )

    @field_validator("gate")
    @classmethod
    def _gate_needs_check(cls, gate: bool, info: ValidationInfo) -> bool:
        if gate and not info.data.get("check", True):
            raise ValueError("the gate needs the check: set fidelity.check: true")
        return gate


class BuildConfig(StrictModel):
    seed: int = Field(0, ge=0, description="Seeds sampling, pairing and the simulated judge")
    population: PopulationConfig = PopulationConfig()
    items: ItemsConfig = ItemsConfig()
    portrayal: PortrayalConfig = PortrayalConfig()
    fidelity: FidelityConfig = FidelityConfig()
    judge: JudgeConfig = SimulatedJudgeConfig()
    generate: GenerateConfig | None = Field(
        None, description="Generate responses for a prompts-only item source (docs/llm-judges.md: generating responses)"
    )
    filters: FiltersConfig = FiltersConfig()
    adaptive: AdaptiveConfig = AdaptiveConfig()
    weights: WeightsConfig = WeightsConfig()
    output: OutputConfig = OutputConfig()
    runner: RunnerConfig = RunnerConfig()
    publish: PublishConfig = PublishConfig()

    @model_serializer(mode="wrap")
    def _public_json(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """JSON dumps are what leaves the process (Prefect's stored flow parameters, the card, artifacts), so
        they never carry credentials; Python dumps (the fingerprint) keep every value."""
        dumped = handler(self)
        return public(dumped) if info.mode_is_json() else dumped

    @field_validator("judge", mode="before")
    @classmethod
    def _default_backend(cls, value: Any) -> Any:
        if isinstance(value, dict) and "backend" not in value:
            return {"backend": "simulated", **value}
        return value

    @field_validator("adaptive")
    @classmethod
    def _adaptive_budget(cls, value: AdaptiveConfig, info: ValidationInfo) -> AdaptiveConfig:
        """The rule spends judge.samples: with fewer than two there is nothing to adapt."""
        judge = info.data.get("judge")  # absent when the judge section itself is invalid
        if value.enabled and judge is not None:
            if judge.samples < 2:
                raise ValueError("adaptive sampling needs judge.samples (its budget) of at least 2")
            if value.min_samples > judge.samples:
                raise ValueError(f"min_samples is more than judge.samples ({judge.samples})")
            if value.min_lead > judge.samples:  # no pair could ever lead by that much: all would stop at once
                raise ValueError(f"min_lead is more than judge.samples ({judge.samples})")
        return value

    @field_validator("population")
    @classmethod
    def _allocation_values(cls, value: PopulationConfig) -> PopulationConfig:
        if isinstance(value.allocation, dict) and any(v < 0 for v in value.allocation.values()):
            raise ValueError("allocation values must be >= 0")
        return value


DEFAULT_CONFIG_PATH = assets.path("data", "configs", "default.yaml")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> BuildConfig:
    """Read, override and validate a config; raise ConfigError naming file, field and reason."""
    source = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    raw = _read_yaml_mapping(source)
    _templates_beside(raw, source)
    set_by: dict[str, str] = {}
    for item in overrides:
        key, value = _parse_override(source, item)
        _set_path(raw, key, value)
        set_by[key] = item
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as e:
        problems = [_describe(err, set_by) for err in e.errors()]
        # a value from the command line is the command line's fault, not the config file's
        blamed = "command line" if all("[from --set " in reason for _, reason in problems) else str(source)
        raise ConfigError(blamed, problems) from None


def _templates_beside(raw: dict[str, Any], source: Path) -> None:
    """A relative ``judge.templates`` in a config file means the folder beside the file, wherever the build is
    started from (a ``--set`` value, typed in a shell, stays relative to the working directory)."""
    judge = raw.get("judge")
    folder = judge.get("templates") if isinstance(judge, dict) else None
    if isinstance(folder, str) and folder.strip() and not Path(folder).is_absolute():
        judge["templates"] = str(source.parent / folder)


def _read_yaml_mapping(source: Path) -> dict[str, Any]:
    data = files.parse_yaml(files.read_text(source), str(source))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(source), [("", f"expected a mapping of sections, got {type(data).__name__}")])
    return data


def _parse_override(source: Path, item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError("command line", [(f"--set {item}", "expected key.path=value, e.g. population.size=500")])
    try:
        parsed = files.parse_yaml(value, "command line", f"--set {item}") if value.strip() else value
    except ConfigError as e:
        if "YAML syntax error" not in e.problems[0][1]:
            raise
        parsed = value  # not YAML: take the text as a string and let validation decide
    return key.strip(), parsed


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _describe(err: Any, set_by: dict[str, str]) -> tuple[str, str]:
    loc = [str(p) for p in err["loc"]]
    if loc[:1] == ["judge"] and len(loc) > 2 and loc[1] in _judge_models():
        loc = ["judge", *loc[2:]]  # pydantic names the union member; users know the section
    if loc[:2] == ["generate", "generators"] and len(loc) > 4 and loc[3] in ("openai", "vllm"):
        loc = [*loc[:3], *loc[4:]]
    field = ".".join(loc)
    if err["type"] == "union_tag_invalid":
        field = f"{field}.backend"
        reason = f"unknown backend {err['ctx']['tag']!r}; expected one of {', '.join(_judge_models())}"
    elif err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], str(err["loc"][1]) if field.startswith("judge.") else None)
        reason = "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    else:
        reason = err["msg"].removeprefix("Value error, ")  # pydantic's wording for a validator's ValueError
        if "input" in err and not isinstance(err["input"], dict):
            reason += f" (got {err['input']!r})"
    # the --set that made the error: one at or above the field, or, for a check of a whole section, one inside it
    origin = next((set_by[k] for k in set_by if field == k or field.startswith(k + ".")), None) or next(
        (set_by[k] for k in set_by if k.startswith(field + ".")), None
    )
    if origin:
        reason += f" [from --set {origin}]"
    return field, reason


def _judge_models() -> dict[str, type]:
    return {m.model_fields["backend"].default: m for m in (SimulatedJudgeConfig, VllmJudgeConfig, OpenAIJudgeConfig)}


def _allowed_keys(loc: list[str], backend: str | None = None) -> list[str]:
    model: Any = BuildConfig
    for part in loc:
        if model is BuildConfig and part == "judge":
            model = _judge_models().get(backend or "simulated")
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))
