"""Planning response slots and filling them, micro-batch by micro-batch, through the transports (``llms.open``)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from polypref import llms, progress
from polypref.errors import Interrupted, PolyprefError
from polypref.files import is_blank
from polypref.generation.config import SECTION, GenerateConfig, settings_key
from polypref.generation.store import current_rows, load_store, save_micro_batch
from polypref.interrupt import signal_name, stop_requested
from polypref.judges.base import error_category
from polypref.llms import LLM, Completion, Request
from polypref.records import Item, Response, content_hash
from polypref.safety.secrets import scrub_optional

log = logging.getLogger("polypref.generation")

# Outputs asked for again, with a new seed, up to the generator's max_invalid_retries; a rerun continues with
# fresh seeds (asking a seeded engine the same again would only repeat them). no_answer (the transport already
# retried), request_rejected and engine_error are not retried within a run: a rerun asks again.
RETRYABLE = ("empty", "truncated")


class GenerationError(PolyprefError):
    """Some slots have no usable response after every retry. Saved responses stay saved; a rerun asks again for
    exactly the failed slots. ``failed`` counts them by error category: ``no_answer`` (the endpoint never
    answered), ``empty`` / ``truncated`` (it answered unusably), ``request_rejected``, ``engine_error``."""

    def __init__(self, message: str, failed: dict[str, int]):
        self.failed = failed
        super().__init__(message)


def response_id(item: Item, model: str, generator: int, sample: int) -> str:
    return content_hash(item.id, model, generator, sample)


def plan_slots(items: Sequence[Item], config: GenerateConfig) -> tuple[Item, ...]:
    """The items with one placeholder response (final id, empty text, the generator's model) per slot, in
    generator order, then sample number. Idempotent: items it returned pass through unchanged."""
    planned = []
    for item in items:
        slots = tuple(
            Response(id=response_id(item, g.model, gi, i), text="", model=g.model)
            for gi, g in enumerate(config.generators)
            for i in range(config.n)
        )
        if item.responses and item.responses != slots:
            raise ValueError(f"item {item.id} has responses of its own: only prompts-only items get generated ones")
        planned.append(replace(item, responses=slots))
    return tuple(planned)


def request_messages(item: Item) -> list[dict[str, str]]:
    """A conversational prompt goes as its turns, as they are; a plain one as one user message."""
    if item.messages:
        return [{"role": m.role, "content": m.content} for m in item.messages]
    return [{"role": "user", "content": item.prompt}]


def request_seed(seed: int, response: str, attempt: int) -> int:
    return int(content_hash(seed, response, attempt), 16) % (2**31)


def prompt_key(item: Item) -> str:
    """Hash of what a slot's request sends, so a prompt edited under the same item id is not answered from the
    store (the response id alone would not tell)."""
    return content_hash(json.dumps(request_messages(item), ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class _Slot:
    id: str
    item: Item
    generator: int
    model: str
    prompt: str  # prompt_key(item)
    before: dict[str, Any] | None  # its failed row from an earlier run: attempts and tokens continue from there


def generate(items: Sequence[Item], config: GenerateConfig, seed: int, store: Path) -> tuple[Item, ...]:
    """``plan_slots(items, config)`` with every text filled in (items: prompts-only, or as plan_slots made them).

    Asks only for slots without a usable saved response; saves each micro-batch under ``store`` as it finishes.
    Raises ``GenerationError`` when some slot still has no text (the rest stay saved), ``JudgeFatalError`` on a
    setup error (key, model, URL), ``Interrupted`` after saving the current micro-batch on Ctrl-C / SIGTERM.
    """
    planned = plan_slots(items, config)
    keys = [settings_key(g, seed) for g in config.generators]
    prompts = {item.id: prompt_key(item) for item in planned}
    expected = pl.DataFrame(
        [(r.id, keys[i // config.n], prompts[item.id]) for item in planned for i, r in enumerate(item.responses)],
        schema={"response_id": pl.String(), "settings": pl.String(), "prompt": pl.String()},
        orient="row",
    )
    done, earlier = current_rows(load_store(store), expected)
    progress.expect(progress.GENERATING, expected.height)
    progress.advance(progress.GENERATING, len(done))
    failed: dict[str, dict[str, Any]] = {}
    for gi, generator in enumerate(config.generators):
        todo = [
            _Slot(r.id, item, gi, generator.model, prompts[item.id], earlier.get(r.id))
            for item in planned
            for r in item.responses[gi * config.n : (gi + 1) * config.n]
            if r.id not in done
        ]
        if not todo:
            continue  # nothing to ask: no engine is started, no client made
        total = len(planned) * config.n
        log.info("generator %d (%s): %d of %d responses to generate", gi, generator.model, len(todo), total)
        # store: where pending Batch API batches are
        backend = llms.open(generator, seed, store, section=f"{SECTION}.{gi}")
        try:
            for start in range(0, len(todo), generator.micro_batch):
                rows = _micro_batch(backend, todo[start : start + generator.micro_batch], keys[gi], seed)
                save_micro_batch(store, gi, keys[gi], rows)
                progress.advance(progress.GENERATING, len(rows))
                for row in rows:
                    (failed if row["error"] else done)[row["response_id"]] = row
                if stop_requested():  # the micro-batch just finished is saved; stop before asking for more
                    raise Interrupted(signal_name())
        finally:
            backend.close()
    if failed:
        raise _failure(failed, len(planned) * config.n * len(config.generators), store)
    filled = tuple(
        replace(item, responses=tuple(replace(r, text=done[r.id]["text"]) for r in item.responses)) for item in planned
    )
    if repeated := identical_texts(filled):
        log.warning(
            "%d generated responses repeat another response's text for the same prompt; both are kept, and the "
            "judgments of a pair of them are dropped as identical_texts",
            repeated,
        )
    return filled


def identical_texts(items: Sequence[Item]) -> int:
    """How many responses repeat an earlier response's text within their item (say, for the card)."""
    return sum(len(item.responses) - len({r.text for r in item.responses}) for item in items)


def _micro_batch(backend: LLM, slots: list[_Slot], key: str, seed: int) -> list[dict[str, Any]]:
    """One row per slot; empty and truncated outputs are asked again with the next attempt's seed."""
    messages = [request_messages(s.item) for s in slots]
    rows: dict[int, dict[str, Any]] = {}
    first = [_first_attempt(s) for s in slots]
    pending = list(range(len(slots)))
    for retry in range(backend.config.max_invalid_retries + 1):
        requests = [
            Request(i, first[i] + retry, messages[i], request_seed(seed, slots[i].id, first[i] + retry))
            for i in pending
        ]
        for request, completion in zip(requests, backend.generate(requests), strict=True):
            slot = slots[request.unit]
            rows[request.unit] = _row(slot, key, request, completion, rows.get(request.unit, slot.before))
        pending = [i for i in pending if error_category(rows[i]["error"]) in RETRYABLE]
        if not pending:
            break
    return [rows[i] for i in range(len(slots))]


def _first_attempt(slot: _Slot) -> int:
    """0, or past an earlier run's answered attempts, whose seeds gave unusable output on a seeded engine."""
    before = slot.before
    return int(before["attempts"]) if before and error_category(before["error"]) in RETRYABLE else 0


def _row(slot: _Slot, key: str, request: Request, completion: Completion, previous: dict | None) -> dict[str, Any]:
    text = completion.text
    if completion.error:
        error = completion.error
    elif text is None or is_blank(text):
        error = "empty: " + (f"refusal: {completion.refusal[:200]}" if completion.refusal else "no text in the output")
    elif completion.finish_reason == "length":
        error = "truncated: output reached max_tokens"
    else:
        error = None
    spent = previous or {"prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}
    return {
        "response_id": slot.id,
        "item_id": slot.item.id,
        "generator": slot.generator,
        "model": slot.model,
        "settings": key,
        "prompt": slot.prompt,
        "text": text,  # byte-exact, as sources' texts are kept; for a failed slot, its last output
        "finish_reason": completion.finish_reason,
        "error": scrub_optional(error),
        "prompt_tokens": spent["prompt_tokens"] + (completion.prompt_tokens or 0),
        "completion_tokens": spent["completion_tokens"] + (completion.completion_tokens or 0),
        "attempts": spent["attempts"] + getattr(completion, "requests", 1),  # an endpoint's retries count
    }


def _failure(failed: dict[str, dict[str, Any]], total: int, store: Path) -> GenerationError:
    counts = Counter(error_category(row["error"]) or "unknown" for row in failed.values())
    first = next(iter(failed.values()))
    kinds = ", ".join(f"{n} {category}" for category, n in counts.most_common())
    return GenerationError(
        f"{len(failed)} of {total} responses could not be generated ({kinds}); first: item {first['item_id']}, "
        f"model {first['model']}: {first['error'][:300]}. The other {total - len(failed)} are saved in {store}; "
        f"rerun the same command to generate exactly the {len(failed)} that failed",
        dict(counts),
    )
