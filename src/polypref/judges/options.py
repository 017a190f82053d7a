"""Asking a free-text backend to answer with one of a few named options (annotating stances, fidelity's survey
questions), micro-batch by micro-batch.

An answer counts only when it names one option exactly (case, quotes and end punctuation aside); anything else
is asked again with a new seed, up to the backend's ``max_invalid_retries``, then left unanswered for the
caller to count. The vLLM engine decodes under the options as a constraint, so its answers always name one; an
OpenAI-compatible API is asked for them as a JSON schema enum, and for free text when it refuses that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from polypref.errors import Interrupted
from polypref.interrupt import signal_name, stop_requested
from polypref.llms import LLM, Request
from polypref.records import content_hash

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Answers:
    options: list[str | None]  # per question, the option its answer named; None after every retry
    no_answer: int  # ... of those, questions whose last request got no answer at all (transport, rejection)
    # per question, what asking it took: requests sent (retries included) and their tokens
    requests: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)

    def spent(self, rows: Iterable[int]) -> dict[str, list[int]]:
        """What asking the questions at ``rows`` took, per cost: requests, prompt_tokens, completion_tokens."""
        chosen = list(rows)
        return {kind: [getattr(self, kind)[i] for i in chosen] for kind in SPENT}


SPENT = ("requests", "prompt_tokens", "completion_tokens")  # what asking a question costs, as Answers keeps it


def ask_options(
    backend: LLM,
    questions: Sequence[Messages],
    options: Sequence[Sequence[str]],
    seed: int,
    kind: str,
    draws: Sequence[int] | None = None,
) -> Answers:
    """The option each question's answer names. ``kind`` keeps the seeds of different uses of the same question
    apart; ``draws`` (one per question) those of repeated samples of one question (draw 0 keeps the seed a
    single ask has)."""
    out: list[str | None] = [None] * len(questions)
    failed: set[int] = set()
    sent = [0] * len(questions)
    tokens = {k: [0] * len(questions) for k in ("prompt", "completion")}
    size = backend.config.micro_batch
    for start in range(0, len(questions), size):
        if stop_requested():  # between micro-batches: a signal stops the questions, not only the judging after
            raise Interrupted(signal_name())
        pending = list(range(start, min(start + size, len(questions))))
        for attempt in range(backend.config.max_invalid_retries + 1):
            requests = [
                Request(
                    i,
                    attempt,
                    list(questions[i]),
                    _seed(seed, kind, questions[i], attempt, draws[i] if draws else 0),
                    tuple(options[i]),
                )
                for i in pending
            ]
            for request, completion in zip(requests, backend.generate(requests), strict=True):
                out[request.unit] = named_option(completion.text, options[request.unit])
                (failed.add if completion.error else failed.discard)(request.unit)
                sent[request.unit] += 1
                tokens["prompt"][request.unit] += completion.prompt_tokens or 0  # as judgments count them
                tokens["completion"][request.unit] += completion.completion_tokens or 0
            pending = [i for i in pending if out[i] is None]
            if not pending:
                break
    return Answers(out, len(failed), sent, tokens["prompt"], tokens["completion"])


def _seed(seed: int, kind: str, messages: Messages, attempt: int, draw: int = 0) -> int:
    text = messages[0]["content"] if len(messages) == 1 else repr(messages)  # one message: annotate's old seeds
    parts = (seed, kind, text, attempt) if not draw else (seed, kind, text, attempt, draw)
    return int(content_hash(*parts), 16) % (2**31)


def named_option(text: str | None, options: Iterable[str]) -> str | None:
    """The option an answer names: all of it, nothing else (case, quotes and end punctuation aside), as text or
    as the {"answer": ...} object an API is asked for under a JSON schema."""
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        text = answer.get("answer") if isinstance(answer, dict) and isinstance(answer.get("answer"), str) else text
    said = text.strip().strip("\"'`*").strip().rstrip(".!").strip().casefold()
    return next((o for o in options if o.casefold() == said), None)
