"""The OpenAI transport's Batch API mode: a whole micro-batch sent as one OpenAI batch, polled until it ends, and found
again after a restart (its id kept in the work folder) instead of paid for twice. Mixed into
``llms.openai.OpenAILLM``, whose client, probe, setup errors and output formats it uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from polypref.errors import PolyprefError
from polypref.files import write_json
from polypref.llms.base import NO_ANSWER, Completion, Request
from polypref.llms.openai_wire import (
    FATAL,
    TERMINAL,
    batch_lines,
    batch_results,
    custom_id,
    error_message,
    format_refused,
)
from polypref.llms.ratelimit import stopped_within
from polypref.records import content_hash
from polypref.safety.secrets import scrub

log = logging.getLogger("polypref.llms.openai")  # the transport's own: one logger for its messages


@dataclass(frozen=True)
class PendingBatch:
    """A submitted batch, kept in the work folder (``batches/<key>.json``) until its micro-batch is saved, so a
    rerun polls it rather than pays for it again."""

    batch_id: str
    input_file_id: str
    response_format: str

    @classmethod
    def read(cls, path: Path) -> PendingBatch:
        try:
            return _PENDING_BATCH.validate_json(path.read_bytes())
        except (OSError, ValidationError) as e:
            raise PolyprefError(
                f"{path}: not a pending batch's record ({type(e).__name__}); if no batch of this build is still "
                "running at the provider, delete the file and rerun (its micro-batch is submitted again)"
            ) from None

    def write(self, path: Path) -> None:
        write_json(asdict(self), path)


_PENDING_BATCH = TypeAdapter(PendingBatch)


class BatchAPI:
    """Batch API mode, for ``OpenAILLM`` (``_batch``: a micro-batch as one batch)."""

    async def _batch(self, requests: Sequence[Request], stop: asyncio.Event) -> list[Completion]:
        import openai

        await self._probed()
        try:
            return await self._batch_once(requests, stop)
        except openai.APIStatusError as e:
            if e.status_code in FATAL:
                self._fail(e.status_code, error_message(e))
            raise PolyprefError(
                f"Batch API call to {self._where} failed: HTTP {e.status_code}: {error_message(e)} "
                "(rerun the same command: a submitted batch is found again)"
            ) from None

    async def _batch_once(self, requests: Sequence[Request], stop: asyncio.Event) -> list[Completion]:
        if self.workdir is None:
            raise PolyprefError("judge.batch_api needs a work folder to remember pending batches")
        fmt = self._request_format()
        key = content_hash(self.config.model, fmt, *(custom_id(r) + str(r.seed) for r in requests), size=12)
        state_file = self.workdir / "batches" / f"{key}.json"
        async with self._client(self.config.endpoints[0]) as client:
            if state_file.exists():
                batch_id = PendingBatch.read(state_file).batch_id
                log.info("found pending batch %s for micro-batch %s", batch_id, key)
            else:
                upload = await client.files.create(
                    file=(f"polypref-{key}.jsonl", batch_lines(self.config, requests, fmt)),
                    purpose="batch",
                )
                batch = await client.batches.create(
                    input_file_id=upload.id,
                    endpoint="/v1/chat/completions",
                    completion_window="24h",
                    metadata={"polypref": key},
                )
                batch_id = batch.id
                PendingBatch(batch_id, upload.id, fmt).write(state_file)
            batch = await self._finished_batch(client, batch_id, stop)
            if batch is None:  # a stop: the batch goes on at the provider, and a rerun finds it (state_file)
                stopped = f"{NO_ANSWER}: stopped while batch {batch_id} was pending"
                return [Completion(error=stopped, response_format=fmt) for _ in requests]
            if batch.status != "completed":
                errors = getattr(getattr(batch, "errors", None), "data", None) or []
                detail = "; ".join(scrub(getattr(e, "message", e))[:200] for e in errors[:3])
                log.warning(
                    "batch %s %s%s: its requests are left unanswered and asked again on the next run",
                    batch_id,
                    batch.status,
                    f" ({detail})" if detail else "",
                )
            results: dict[str, Completion] = {}
            fatal: tuple[int, str] | None = None
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await client.files.content(file_id)
                    found, fatal_here = batch_results(content.text, fmt)
                    results.update(found)
                    fatal = fatal or fatal_here
        state_file.unlink(missing_ok=True)  # finished: a rerun must not read the same results again
        if fatal is not None:
            self._fail(*fatal)
        missing = f"{NO_ANSWER}: batch {batch_id} {batch.status} without a result for this request"
        completions = [results.get(custom_id(r)) or Completion(error=missing, response_format=fmt) for r in requests]
        rejected = [(i, r) for i, (r, c) in enumerate(zip(requests, completions, strict=True)) if format_refused(c)]
        if rejected and self._downgrade_format(fmt, completions[rejected[0][0]].error or ""):
            again = await self._batch_once([r for _, r in rejected], stop)  # a new batch in the simpler format
            for (i, _), completion in zip(rejected, again, strict=True):
                completions[i] = completion
        return completions

    async def _finished_batch(self, client: Any, batch_id: str, stop: asyncio.Event) -> Any:
        """The batch once it ended (completed, failed, expired, cancelled); None if a stop came first."""
        batch = await client.batches.retrieve(batch_id)
        while batch.status not in TERMINAL:
            if await stopped_within(stop, self.config.batch_poll_s):
                return None
            batch = await client.batches.retrieve(batch_id)
        return batch
