"""What every LLM judge shares: config, prompt rendering, micro-batching, parsing and invalid-output retries.

A backend implements one method, ``_generate(requests) -> completions``; everything else lives here, so the
vLLM engine and OpenAI-compatible APIs behave the same way on the same inputs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl
from pydantic import Field, field_validator, model_validator

from polypref import prompts
from polypref.judges.base import VERDICT_COLUMNS, JudgeInfo, error_category
from polypref.judges.parsing import parse_choice, parse_verdict
from polypref.records import UnitBatch, WorkUnit, content_hash
from polypref.safety.secrets import install_log_redaction, scrub_optional
from polypref.strict import StrictModel

SYSTEM_TEMPLATE = "judge_system.j2"
PAIR_TEMPLATE = "judge_pairwise.j2"


class LLMJudgeConfig(StrictModel):
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


# Categories of a bad *answer*: asked again (max_invalid_retries), then kept and counted. Transport failures
# (no_answer) are not among them: the backend retried those already, and the pipeline asks again on a rerun.
RETRYABLE = ("unparseable", "invalid_verdict", "truncated", "refusal", "no_logprobs")


def template_provenance(user: str | None = None) -> str:
    """Template names and content hashes, stored with every judgment; ``(user)`` marks one from the user's
    folder (``judge.templates``), which is named by file and hash only, never by where it lies."""
    return ", ".join(
        f"{name}:{prompts.template_hash(name, user)}" + (" (user)" if prompts.is_users(name, user) else "")
        for name in (SYSTEM_TEMPLATE, PAIR_TEMPLATE)
    )


class LLMJudge:
    """Base of the LLM backends: subclasses set ``info`` and implement ``_generate``."""

    info: JudgeInfo

    def __init__(self, config: LLMJudgeConfig, seed: int):
        self.config = config
        self.seed = seed
        self._lock = threading.Lock()
        self.serialize_calls = True  # one engine per process: shard threads take turns (an API judge need not)
        self._system = prompts.template(SYSTEM_TEMPLATE, config.templates)
        self._pair = prompts.template(PAIR_TEMPLATE, config.templates)
        install_log_redaction()  # servers echo keys and URLs in errors; libraries log request URLs

    def _info(self, backend: str, params: dict) -> JudgeInfo:
        return JudgeInfo(
            backend=backend,
            model=self.config.model,
            simulated=False,
            params={k: v for k, v in params.items() if k != "templates"},  # the folder: a path on this machine
            template=template_provenance(self.config.templates),
        )

    # -- what a backend implements -----------------------------------------------------------------
    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    # -- shared --------------------------------------------------------------------------------------
    def messages(self, unit: WorkUnit, portrayal: str | None = None) -> list[dict[str, str]]:
        """The chat request for one unit; ``portrayal`` is the persona text (default: the sampled portrayal)."""
        first, second = unit.pair.shown(unit.order)
        item = unit.pair.item
        return [
            {"role": "system", "content": self.system_prompt(portrayal or unit.persona.portrayal)},
            {
                "role": "user",
                "content": self._pair.render(
                    prompt=item.prompt,
                    turns=item.messages or (),
                    first=first.text,
                    second=second.text,
                    mode=self.config.mode,
                    persona=bool(portrayal or unit.persona.portrayal),
                ),
            },
        ]

    def system_prompt(self, portrayal: str) -> str:
        return self._system.render(persona=portrayal, mode=self.config.mode, allow_ties=self.config.allow_ties)

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        size = self.config.micro_batch
        for start in range(0, len(batch), size):
            yield self._judge_units(batch, range(start, min(start + size, len(batch))))

    def _judge_units(self, batch: UnitBatch, units: range) -> pl.DataFrame:
        portrayals: dict[tuple[str, str | None], str] = {}  # persona-major: one render per persona and topic
        built: dict[int, tuple[WorkUnit, list[dict[str, str]]]] = {}
        for i in units:
            unit = batch.unit(i)
            key = (unit.persona.id, unit.pair.item.topic)
            if key not in portrayals:
                portrayals[key] = batch.portray(unit.persona, unit.pair.item.topic).text
            built[i] = (unit, self.messages(unit, portrayals[key]))

        rows: dict[int, dict] = {}
        pending = list(units)
        for attempt in range(self.config.max_invalid_retries + 1):
            requests = [Request(i, attempt, built[i][1], self._request_seed(built[i][0], attempt)) for i in pending]
            with self._lock if self.serialize_calls else contextlib.nullcontext():
                completions = self._generate(requests)
            for request, completion in zip(requests, completions, strict=True):
                rows[request.unit] = self._row(request, completion, rows.get(request.unit))
            pending = [i for i in pending if error_category(rows[i]["error"]) in RETRYABLE]
            if not pending:
                break
        return pl.DataFrame([rows[i] for i in units], schema=VERDICT_COLUMNS)

    def _request_seed(self, unit: WorkUnit, attempt: int) -> int:
        return int(content_hash(self.seed, unit.key, attempt), 16) % (2**31)

    def _row(self, request: Request, completion: Completion, previous: dict | None) -> dict:
        if completion.error:
            verdict, error = None, completion.error
        elif completion.refusal:
            verdict, error = None, f"refusal: {completion.refusal[:200]}"
        elif completion.finish_reason == "length" and self.config.mode == "verdict":  # choice mode asks for 1 token
            verdict, error = None, f"truncated: output reached max_tokens ({self.config.max_tokens})"
        elif self.config.mode == "choice":
            verdict, error = parse_choice(completion.text, completion.choice_logprobs, self.config.allow_ties)
        else:
            verdict, error = parse_verdict(completion.text, self.config.allow_ties)
        spent = previous or {"prompt_tokens": 0, "completion_tokens": 0}
        return {
            "unit": request.unit,
            "choice": verdict.choice if verdict else None,
            "strength": verdict.strength if verdict else None,
            "confidence": verdict.confidence if verdict else None,
            "rationale": verdict.rationale if verdict else None,
            "raw": scrub_optional(completion.text if completion.text is not None else completion.refusal),
            "error": scrub_optional(error),
            "true_choice": None,
            "prompt_tokens": spent["prompt_tokens"] + (completion.prompt_tokens or 0),
            "completion_tokens": spent["completion_tokens"] + (completion.completion_tokens or 0),
            "attempts": request.attempt + 1,
            "response_format": completion.response_format,
        }
