"""The ``generate`` section: how many responses per prompt, and which models write them.

A generator is a judge backend's transport settings in free-text mode: ``OpenAIGeneratorConfig`` and
``VllmGeneratorConfig`` subclass the judge configs, so model, endpoint, key, concurrency, retries, sampling and
engine settings are spelled, validated and documented once. Judge-only settings are fixed, left out of dumps and
schemas, and refused by name when given, so a ``samples: 3`` copied from a judge section is not silently ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from polypref import llms
from polypref.judges.base import RUN_SETTINGS
from polypref.llms.openai_wire import OpenAIJudgeConfig
from polypref.llms.vllm import VllmJudgeConfig
from polypref.records import content_hash
from polypref.strict import StrictModel

SECTION = "generate.generators"  # how messages name a generator: f"{SECTION}.{index}"

# Generator settings that change how the work runs, not which text a slot gets (as fingerprint.OPERATIONAL
# does for the judge): changing them between runs keeps saved responses.
OPERATIONAL = RUN_SETTINGS | {"max_invalid_retries"}  # a text made at attempt k is the same whatever the budget


_Hidden = SkipJsonSchema[Any]  # a judge field fixed for generators: not in schemas, dumps or fingerprints


class _TextMode(StrictModel):
    """What every generator shares: free text, generation's defaults, and judge-only settings refused by name.
    Listed first among a generator's bases, so these fields replace the judge's."""

    mode: Literal["text"] = Field("text", description="Free text (the only generator mode)")
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature (> 0 when generate.n > 1)")
    max_tokens: int = Field(1024, ge=1, le=32_768, description="Output token limit; longer outputs are retried")
    max_invalid_retries: int = Field(2, ge=0, le=10, description="Re-asks for empty or truncated output")
    micro_batch: int = Field(256, ge=1, description="Responses per call; finished micro-batches are saved")
    samples: _Hidden = Field(1, exclude=True)
    allow_ties: _Hidden = Field(False, exclude=True)
    templates: _Hidden = Field(None, exclude=True)  # a generator is asked the item's own prompt, no template

    judge_only: ClassVar[frozenset[str]] = frozenset({"samples", "allow_ties", "templates"})

    @model_validator(mode="before")
    @classmethod
    def _no_judge_settings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in sorted(cls.judge_only & set(data)):
                hint = " (generate.n sets responses per prompt)" if key == "samples" else ""
                raise ValueError(f"{key}: a judge setting, not used by generators{hint}")
        return data


class OpenAIGeneratorConfig(_TextMode, OpenAIJudgeConfig):
    judge_only: ClassVar[frozenset[str]] = frozenset(
        {"samples", "allow_ties", "templates", "response_format", "logprobs"}
    )
    response_format: _Hidden = Field("none", exclude=True)
    logprobs: _Hidden = Field(False, exclude=True)


class VllmGeneratorConfig(_TextMode, VllmJudgeConfig):
    judge_only: ClassVar[frozenset[str]] = frozenset(
        {"samples", "allow_ties", "templates", "structured_outputs_backend"}
    )
    structured_outputs_backend: _Hidden = Field("xgrammar", exclude=True)


GeneratorConfig = Annotated[OpenAIGeneratorConfig | VllmGeneratorConfig, Field(discriminator="backend")]


class GenerateConfig(StrictModel):
    n: int = Field(2, ge=1, le=64, description="Responses per prompt from each generator")
    generators: list[GeneratorConfig] = Field(
        min_length=1, description="Models that write the responses: backend (vllm | openai) and its settings"
    )

    @model_validator(mode="after")
    def _sampling(self) -> GenerateConfig:
        for index, generator in enumerate(self.generators):
            if self.n > 1 and generator.temperature == 0:
                raise ValueError(
                    f"generators.{index}.temperature: n > 1 needs temperature > 0 (greedy samples are identical)"
                )
        return self


def settings_key(generator: OpenAIGeneratorConfig | VllmGeneratorConfig, seed: int) -> str:
    """Hash of what decides a generator's texts (model, sampling, engine, seed): saved rows under another key
    were made differently and are not reused."""
    dumped = {k: v for k, v in generator.model_dump(mode="json").items() if k not in OPERATIONAL}
    return content_hash(seed, json.dumps(dumped, sort_keys=True))


def check_environment(config: GenerateConfig) -> list[tuple[str, str]]:
    """(field, reason) for each thing a generator needs from this machine and lacks (a vLLM install, a key in
    the environment: ``llms.environment``), so a build can refuse before any work rather than fail mid-run."""
    return [
        problem
        for index, generator in enumerate(config.generators)
        for problem in llms.environment(generator, f"{SECTION}.{index}")
    ]
