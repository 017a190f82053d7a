"""What every transport shares: the settings of an LLM backend, a chat request, a completion, the error categories
a completion without an answer carries, and the ``LLM`` protocol a transport implements.

A transport turns chat requests into completions (``generate``) and nothing more: judges (``judges.llm``) render
and parse, generation asks the item's own prompt, fidelity and annotation ask for one of named options.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from polypref import prompts
from polypref.assets import json_schema
from polypref.strict import StrictModel

# The category (text before the first ":") of ``error`` for a unit that never got an answer: transport
# failures after every retry, a Batch API batch that failed or expired. Unlike an invalid answer, such a unit
# is not done: it is not saved as finished work, and a rerun asks again for exactly these units.
NO_ANSWER = "no_answer"


# Error categories of a request that failed for what it was or where it ran (a 4xx such as out of credits or
# too long, an engine that ran out of memory), not of an answer the model gave.
REJECTED = "request_rejected"
ENGINE_ERROR = "engine_error"


class LLMJudgeConfig(StrictModel):
    """The settings every LLM backend shares; a backend's own config subclasses it (``backend: Literal[...]``)."""

    model: str = Field(description="Model path or name (vLLM) / model id (API)")
    samples: int = Field(1, ge=1, le=64, description="Judgments per (persona, pair, order)")
    mode: Literal["verdict", "choice"] = Field(
        "verdict", description="verdict: JSON verdict; choice: one letter, confidence from logprobs"
    )
    allow_ties: bool = Field(
        True,
        description='Let the judge answer "tie" (no preference): such units leave preferences as indifferent and '
        "count in the soft labels; false forces a pick, a coin flip for an indifferent persona",
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (> 0 when samples > 1)")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, le=32_768, description="Output token limit per judgment")
    max_invalid_retries: int = Field(2, ge=0, le=10, description="Re-asks for unparseable or truncated output")
    micro_batch: int = Field(256, ge=1, description="Units per engine call; finished micro-batches are saved")
    templates: str | None = Field(
        None,
        description="A folder of your own prompt templates: each file named as one in prompts/ that the judge's "
        f"model is asked with ({', '.join(prompts.VARIABLES)}) replaces it, the others stay; in a config file, "
        "relative to the file's folder",
    )

    @field_validator("templates")
    @classmethod
    def _templates(cls, folder: str | None) -> str | None:
        """Checked when the config loads, before any request: a template that cannot render would otherwise
        fail, or a misspelt file name silently leave the shipped prompt in use, hours into a paid build."""
        if folder is not None:
            problems = prompts.check_folder(folder)
            if problems:
                raise ValueError("; ".join(problems))
        return folder

    @model_validator(mode="after")
    def _sampling(self) -> LLMJudgeConfig:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("temperature: samples > 1 needs temperature > 0 (greedy samples are identical)")
        return self


@dataclass(frozen=True, slots=True)
class Request:
    """One chat request: unit ``unit`` of the batch, attempt ``attempt``."""

    unit: int
    attempt: int
    messages: list[dict[str, str]]
    seed: int
    # the answer must be one of these texts (a survey question's options): the vLLM engine decodes under that
    # constraint; an API gets free text, checked by the caller
    options: tuple[str, ...] | None = None


@dataclass(slots=True)
class Completion:
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    choice_logprobs: dict[str, float] | None = None  # choice mode: label -> log probability
    refusal: str | None = None
    # "<category>: detail" when there is no model output to parse: ``no_answer`` (the backend gave up after
    # its own retries; the unit is not done) or a request-level rejection such as ``request_rejected``
    error: str | None = None
    response_format: str | None = None  # the output constraint this request was sent with


def request_schema(allow_ties: bool) -> dict[str, Any]:
    """schemas/verdict.json as sent for structured decoding, without "tie" unless ties are allowed."""
    schema = copy.deepcopy(json_schema("verdict"))
    if not allow_ties:
        schema["properties"]["choice"]["enum"] = ["A", "B"]
    return schema


class LLM(Protocol):
    """A transport, as ``llms.open`` returns it: its config, the settings a judge's ``JudgeInfo`` records
    (``params``, nothing secret), and whether callers must take turns (one engine per process) or may call at
    once (an API's shared event loop and limiter)."""

    config: Any
    params: dict[str, Any]
    serialize_calls: bool

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in order; a request that got no answer carries ``error``."""
        ...

    def close(self) -> None: ...
