"""A row's texts and conversations, checked, and the Responses and Items they become.

Texts are strings, or conversations: lists of ``{"role", "content"}`` messages (TRL's conversational format; other
keys are dropped, a content given as a list of text parts is joined). Anthropic's HH-RLHF strings
("\\n\\nHuman: ...\\n\\nAssistant: ...") are read as conversations; responses that open by repeating the prompt
lose those turns (see ``without_prompt``). A bad value raises RowError naming the source's column.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from polypref import files
from polypref.records import Item, Message, Messages, Response, content_hash, messages_text

if TYPE_CHECKING:
    from polypref.items.layout import Layout

_HH_MARK = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


class RowError(ValueError):
    """A bad value in one row: ``column`` is the source's column (with a path into nested values). ``between``:
    two responses (by index) that clash, which the reader names as the user knows them (see ``describe``)."""

    def __init__(self, column: str, reason: str, between: tuple[int, int] | None = None):
        super().__init__(column, reason)
        self.column, self.reason, self.between = column, reason, between

    def describe(self, name: Callable[[int], str] = lambda i: f"responses.{i}") -> str:
        return f"{name(self.between[0])} and {name(self.between[1])} {self.reason}" if self.between else self.reason


def check_text(value: str) -> str:
    """``value``, refused where no reader would see a text, or where no UTF-8 file could store it."""
    if value.isascii():  # most texts, checked without a pass over them: no ASCII character is invisible (Cf)
        if not value or value.isspace():  # or a surrogate
            raise ValueError("must not be empty, whitespace or invisible characters only")
        return value
    if files.is_blank(value):
        raise ValueError("must not be empty, whitespace or invisible characters only")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\\ud800" decodes to a lone surrogate, which no UTF-8 file can store
        raise ValueError("holds an unpaired surrogate (a \\ud800-\\udfff escape), which is not Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(check_text)]


def _turns(value: Any) -> str | Messages:
    """A text, or a conversation: a non-empty list of {role, content} messages (as a tuple of Message). Other keys
    of a message (Parquet's nulls, ``name``, ``tool_calls``) are dropped: a Message carries role and content."""
    if isinstance(value, str):
        return check_text(value)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a text or a non-empty list of {role, content} messages")
    turns = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            keys = sorted(message) if isinstance(message, dict) else type(message).__name__
            raise ValueError(f"message {index} must be an object with role and content (got {keys})")
        role, content = message["role"], message["content"]
        if isinstance(content, list):
            content = _content(content, index)
        for key, text in (("role", role), ("content", content)):
            if not isinstance(text, str):
                raise ValueError(f"message {index}: {key} must be text (got {type(text).__name__})")
            try:
                check_text(text)
            except ValueError as e:
                raise ValueError(f"message {index}: {key} {e}") from None
        turns.append(Message(role, content))
    return tuple(turns)


def _content(value: list[Any], index: int) -> str:
    """A message's content given as a list of text parts (``[{"type": "text", "text": ...}]``) joined as chat
    templates join them; a part that is not text (an image) cannot be judged."""
    for number, part in enumerate(value):
        if not (
            isinstance(part, dict) and part.get("type", "text") in ("text", None) and isinstance(part.get("text"), str)
        ):
            raise ValueError(f"message {index}: content part {number} is not a text part ({{type: text, text: ...}})")
    return "".join(part["text"] for part in value)


def _id(value: Any) -> str:
    """Ids are texts; integer ids (common in Parquet) are read as their decimal text."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a text or an integer (got {type(value).__name__})")
    return check_text(value) if isinstance(value, str) else str(value)


TextOrConversation = Annotated[Any, AfterValidator(_turns)]
Id = Annotated[Any, AfterValidator(_id)]
Score = Annotated[float, Field(allow_inf_nan=False)]  # NaN would compare false both ways and invert labels


def printable(part: int | str) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)


def hh_turns(value: Any, column: str, prompt: bool = False) -> Any:
    """Anthropic's HH-RLHF text ("\\n\\nHuman: ...\\n\\nAssistant: ...", or without the first "\\n\\n") as its
    turns; other values as they are. A prompt's closing empty "\\n\\nAssistant:" (the turn the responses write) is
    dropped."""
    if not isinstance(value, str) or not value.startswith(("\n\nHuman:", "Human:")) or "\n\nAssistant:" not in value:
        return value
    parts = _HH_MARK.split(value if value.startswith("\n") else f"\n\n{value}")
    turns = [{"role": _HH_ROLES[role], "content": text} for role, text in zip(parts[1::2], parts[2::2], strict=True)]
    if prompt and turns[-1]["role"] == "assistant" and files.is_blank(turns[-1]["content"]):
        turns.pop()
    try:
        return _turns(turns)
    except ValueError as e:
        raise RowError(column, str(e)) from None


# ---- responses that repeat the prompt ---------------------------------------------------------------------------


def without_prompt(prompt: Any, texts: Sequence[Any], columns: Sequence[str]) -> tuple[Any, list[Any]]:
    """The prompt, and the responses without the opening turns that repeat it: ultrafeedback_binarized has a text
    prompt and ``chosen = [user: prompt, assistant: answer]``; kept whole, the judge would read the prompt inside
    each response and TRL would train on it twice. A text prompt repeated after shared system turns takes them
    on (they are the prompt's, not the responses'); openings that differ between responses are cut only where
    they are the prompt's turn alone."""
    if not any(isinstance(text, tuple) for text in texts):  # texts only: nothing to cut (most sources, fast)
        return prompt, list(texts)
    cuts = [_repeats(prompt, text) for text in texts]
    if isinstance(prompt, str):
        openings = {text[:cut] for text, cut in zip(texts, cuts, strict=True) if cut}
        if len(openings) > 1:
            cuts = [cut if cut == 1 else 0 for cut in cuts]
        elif openings and len(opening := next(iter(openings))) > 1:
            prompt = opening
    kept = []
    for text, cut, column in zip(texts, cuts, columns, strict=True):
        if cut and cut == len(text):
            raise RowError(column, "repeats the prompt and holds no response after it")
        kept.append(text[cut:] if cut else text)
    return prompt, kept


def _repeats(prompt: Any, text: Any) -> int:
    """How many opening turns of a conversational response repeat the prompt (0: none): the prompt's turns, or
    for a text prompt, system turns and then a user turn with the prompt's text."""
    if not isinstance(text, tuple):
        return 0
    if isinstance(prompt, tuple):
        if len(text) < len(prompt):
            return 0
        for a, b in zip(prompt, text, strict=False):  # the response goes on after the prompt's turns
            if a.role != b.role or a.content.strip() != b.content.strip():
                return 0
        return len(prompt)
    for index, turn in enumerate(text):
        if turn.role == "user" and turn.content.strip() == prompt.strip():
            return index + 1
        if turn.role != "system":
            return 0
    return 0


# ---- responses and items ----------------------------------------------------------------------------------------


def interned(label: str | None) -> str | None:
    """One string object per distinct topic or stance, not one per row: 10^6 items repeat a handful of them."""
    return sys.intern(label) if label is not None else None


@functools.cache
def scale_position(index: int, steps: int) -> float:
    """A stance's place on its scale, 0 to 1: one float object per place, not one per response (2M at 10^6
    items, 46 MB)."""
    return index / (steps - 1)


def messages_of(value: str | Messages) -> Messages | None:
    return None if isinstance(value, str) else value


def as_text(value: str | Messages) -> str:
    return value if isinstance(value, str) else messages_text(value)


def make_response(
    prompt: str, text: Any, id: str | None = None, model: str | None = None, score: float | None = None, **kw: Any
) -> Response:
    """A response to the prompt whose text (``as_text``) is ``prompt``: an id-less one is known by both texts."""
    shown = as_text(text)
    return Response(
        id=id if id is not None else content_hash(prompt, shown),
        text=shown,
        model=model,
        score=score,
        messages=messages_of(text),
        **kw,
    )


def make_item(
    item_id: str | int | None,
    topic: str | None,
    prompt: Any,
    responses: list[Response],
    label: str | None = None,
    extra: tuple[str, ...] = (),
) -> Item:
    """An item; an id-less one is known by its topic and prompt, and ``extra``, the texts of a pair."""
    text = as_text(prompt)
    if item_id is None:  # a prompt can come with several pairs: the texts judged are part of the identity
        item_id = content_hash(topic, text, *extra)
    return Item(
        id=str(item_id), topic=topic, prompt=text, responses=tuple(responses), messages=messages_of(prompt), label=label
    )


def check_distinct(layout: Layout, responses: list[Response], names: tuple[str, ...]) -> None:
    seen: dict[str, int] = {}
    for index, r in enumerate(responses):
        if r.text in seen:
            first = names[seen[r.text]]
            raise RowError(layout.columns.get(names[index], names[index]), f"has the same text as {first}")
        seen[r.text] = index
