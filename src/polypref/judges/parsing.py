"""Model output -> Verdict, tolerant of chatter around the JSON, strict about what the JSON says.

Every failure is returned as ``(None, "category: detail")`` so it can be stored with the raw text and counted.
Categories: unparseable, invalid_verdict, truncated, refusal, no_logprobs.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from polypref.records import LLMVerdict, Verdict

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
_REFUSAL = re.compile(r"^\s*(i'm sorry|i am sorry|i can(?:not|'t)|i won't|as an ai)\b", re.IGNORECASE)


def parse_verdict(text: str | None, allow_ties: bool) -> tuple[Verdict | None, str | None]:
    if text is None or not text.strip():
        return None, "unparseable: empty output"
    data = _first_json_object(text)
    if data is None:
        if _REFUSAL.match(text):
            return None, f"refusal: {text.strip()[:120]}"
        return None, "unparseable: no JSON object in the output"
    try:
        parsed = LLMVerdict.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        return None, f"invalid_verdict: {'.'.join(map(str, first['loc']))}: {first['msg']}"
    if parsed.choice == "tie" and not allow_ties:
        return None, "invalid_verdict: choice: tie is not allowed"
    return Verdict(parsed.choice, parsed.strength, parsed.confidence / 100, parsed.rationale), None


def parse_choice(
    text: str | None, logprobs: dict[str, float] | None, allow_ties: bool
) -> tuple[Verdict | None, str | None]:
    """Choice-only mode: the letter, with P(choice) renormalised over the allowed letters as confidence."""
    labels = ["A", "B", "tie"] if allow_ties else ["A", "B"]
    choice = (text or "").strip().strip('."').upper().replace("TIE", "tie")
    if choice not in labels:
        return None, f"unparseable: expected one of {labels}, got {(text or '')[:40]!r}"
    if not logprobs or choice not in logprobs:
        return None, "no_logprobs: choice mode needs the chosen token's log probability"
    mass = {k: math.exp(v) for k, v in logprobs.items() if k in labels}
    confidence = mass[choice] / sum(mass.values())
    strength = max(1, min(5, math.ceil(5 * (2 * confidence - 1)))) if confidence > 0.5 else 1
    return Verdict(choice, strength, round(confidence, 4), "choice-only mode: no rationale"), None


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text; control characters inside strings are tolerated (small models)."""
    cleaned = _FENCE.sub("", text.strip())
    decoder = json.JSONDecoder(strict=False)
    for match in re.finditer(r"\{", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
