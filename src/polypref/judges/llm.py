"""What every LLM judge shares: prompt rendering, micro-batching, parsing and invalid-output retries.

The judge holds a transport (``llms.open``: the vLLM engine, an OpenAI-compatible API) that turns its chat
requests into completions; everything else lives here, so every backend behaves the same way on the same inputs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polypref import llms, prompts
from polypref.judges.base import VERDICT_COLUMNS, JudgeInfo, error_category
from polypref.judges.parsing import parse_choice, parse_verdict
from polypref.llms.base import Completion, LLMJudgeConfig, Request
from polypref.records import UnitBatch, WorkUnit, content_hash
from polypref.safety.secrets import scrub_optional

SYSTEM_TEMPLATE = "judge_system.j2"
PAIR_TEMPLATE = "judge_pairwise.j2"


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
    """The judge of every LLM backend: it renders each unit's chat request, asks through the transport its
    config's ``backend`` names (``llms.open``), and parses the answers."""

    info: JudgeInfo

    def __init__(self, config: LLMJudgeConfig, seed: int, workdir: Path | None = None, **options: Any):
        """``workdir`` keeps what the transport must resume from (pending Batch API batches); ``options`` go to
        the transport (an OpenAI-compatible one takes ``transport``, an httpx2 transport for fault injection)."""
        self.config = config
        self.seed = seed
        self._lock = threading.Lock()
        self._system = prompts.template(SYSTEM_TEMPLATE, config.templates)
        self._pair = prompts.template(PAIR_TEMPLATE, config.templates)
        self.llm = llms.open(config, seed, workdir, section="judge", **options)
        # one engine per process: shard threads take turns; an API's transport lets them call at once
        self.serialize_calls = self.llm.serialize_calls
        self.info = JudgeInfo(
            backend=config.backend,
            model=config.model,
            simulated=False,
            params={k: v for k, v in self.llm.params.items() if k != "templates"},  # the folder: a local path
            template=template_provenance(config.templates),
        )

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        return self.llm.generate(requests)

    def close(self) -> None:
        llm = self.__dict__.get("llm")
        if llm is not None:
            llm.close()

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
            # every request sent for the unit: its invalid-output re-asks and, within each, a transport's own
            # retries and format fallbacks (``Completion.requests``), so no answer after N retries reads N + 1
            "attempts": (previous["attempts"] if previous else 0) + getattr(completion, "requests", 1),
            "response_format": completion.response_format,
        }
