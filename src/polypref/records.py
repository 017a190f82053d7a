"""The nouns of a build: personas, responses, pairs, work units and verdicts.

Objects up to the judge, columns after it: personas and pairs are few and rich, so they are frozen
dataclasses; judgments are many and thin, so judges return columns (see ``judges.base``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Order = Literal["AB", "BA"]
PAIR_KEYS = ["persona_id", "pair_id"]  # columns of one (persona, pair): one vote, at most one preference row
ORDERS: tuple[Order, Order] = ("AB", "BA")


def content_hash(*parts: object, size: int = 8) -> str:
    """Stable hex id of the given parts (blake2b; independent of Python's hash seed and of process)."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on 64-bit integers that spreads every input bit over the output
    (vectorised per-unit hashing: seeds, store keys)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def record_digest(record: object) -> str:
    """128-bit content digest of a persona or pair as a whole (every field): what the store and the layout of
    a grown build compare."""
    return content_hash(record, size=16)


@dataclass(frozen=True, slots=True)
class Persona:
    """One sampled survey respondent, ready to be role-played."""

    id: str
    spec: str
    respondent_id: str
    replicate: int  # how many earlier draws of the same respondent this population holds
    group: str
    attributes: Mapping[str, str | None]
    attitudes: Mapping[str, str | None]  # topic -> answer label; None = not answered (kept, marked)
    positions: Mapping[str, float | None]  # topic -> answer's place on its scale, 0..1
    weight: float  # post-stratification weight: population share / sample share of the group
    portrayal: str


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation, as chat datasets (and TRL's conversational format) spell it."""

    role: str
    content: str


Messages = tuple[Message, ...]


def messages_text(messages: Messages) -> str:
    """A conversation as one text, for ids, hashes and a judge reading one response: a single turn is its content,
    several are "role: content" blocks."""
    if len(messages) == 1:
        return messages[0].content
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages)


@dataclass(frozen=True, slots=True)
class Response:
    id: str
    text: str  # what the judge reads; for a conversational source, the content of the response's turns
    stance: str | None = None  # a label of the topic's answer scale; None = not annotated (LLM judges only)
    position: float | None = None  # the stance's place on the scale, 0..1
    model: str | None = None  # the model that wrote it, when the source or our generator says
    score: float | None = None  # the source's own rating (completions sources); the higher-rated wins a pair
    messages: Messages | None = None  # the source's turns, kept for output when it was conversational


@dataclass(frozen=True, slots=True)
class Item:
    """A user prompt with several responses. ``topic`` and the responses' stances are optional: an item
    without them (an open item) is judged by LLM backends from the persona's whole portrayal."""

    id: str
    topic: str | None
    prompt: str  # the prompt text; for a conversational source, its turns as one text (see messages)
    responses: tuple[Response, ...]
    messages: Messages | None = None  # the prompt's turns (conversational sources): shown to the judge, kept
    label: str | None = None  # id of the response the source prefers (pairwise sources)

    @property
    def annotated(self) -> bool:
        """Whether the simulated judge can judge it: a topic and a stance for every response."""
        return self.topic is not None and all(r.position is not None for r in self.responses)


@dataclass(frozen=True, slots=True)
class ResponsePair:
    id: str
    item: Item
    a: Response
    b: Response

    @staticmethod
    def of(item: Item, a: Response, b: Response) -> ResponsePair:
        return ResponsePair(id=content_hash(item.id, a.id, b.id), item=item, a=a, b=b)

    def shown(self, order: Order) -> tuple[Response, Response]:
        """The responses in the positions the judge sees them: (first, second)."""
        return (self.a, self.b) if order == "AB" else (self.b, self.a)

    @property
    def source_side(self) -> Literal["a", "b"] | None:
        """The side the source itself prefers: its label, or the higher of its ratings (None: no preference)."""
        if self.item.label is not None:
            return "a" if self.item.label == self.a.id else "b" if self.item.label == self.b.id else None
        if self.a.score is None or self.b.score is None or self.a.score == self.b.score:
            return None
        return "a" if self.a.score > self.b.score else "b"


@dataclass(frozen=True, slots=True)
class Portrayal:
    """The persona text one judgment is made with, and the survey topics whose answers it shows."""

    text: str
    shown: tuple[str, ...]


def shown_topics(persona: Persona, topic: str | None, hold_out: bool) -> tuple[str, ...]:
    """The survey topics whose answers a portrayal shows when the persona judges an item on ``topic``."""
    return tuple(t for t, v in persona.attitudes.items() if v is not None and not (hold_out and t == topic))


class Portrayals(Protocol):
    """The portrayal a persona judges an item on ``topic`` with, and (cheaply, without rendering it) which
    survey topics' answers it shows: one object answers both, so the judge's text and the recorded topics agree."""

    def __call__(self, persona: Persona, topic: str | None) -> Portrayal: ...

    def shown(self, persona: Persona, topic: str | None) -> tuple[str, ...]: ...


class FullPortrayals:
    """The personas as sampled, every answer shown (nothing held out)."""

    def __call__(self, persona: Persona, topic: str | None) -> Portrayal:
        return Portrayal(persona.portrayal, self.shown(persona, topic))

    def shown(self, persona: Persona, topic: str | None) -> tuple[str, ...]:
        return shown_topics(persona, topic, hold_out=False)


FULL_PORTRAYALS = FullPortrayals()


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One judgment to make: a persona, a pair, the order shown and the sample number."""

    persona: Persona
    pair: ResponsePair
    order: Order
    sample: int

    @property
    def key(self) -> str:
        """Content key: the same unit in any run has the same key (resume and request-cache key)."""
        return content_hash(self.persona.id, self.pair.id, self.order, self.sample)


@dataclass(frozen=True, slots=True)
class UnitBatch:
    """A persona-major block of work units kept as index columns (a shard holds hundreds of thousands).

    Row ``i`` is persona ``personas[persona_idx[i]]`` judging ``pairs[pair_idx[i]]`` in order
    ``ORDERS[order[i]]``, sample ``sample[i]``. Vectorised judges read the columns; LLM judges iterate units.
    """

    personas: tuple[Persona, ...]
    pairs: tuple[ResponsePair, ...]
    shard: int  # which shard of the build: seeds stochastic judges so any shard can be redone alone
    persona_idx: np.ndarray
    pair_idx: np.ndarray
    order: np.ndarray  # 0 = AB, 1 = BA
    sample: np.ndarray
    # the portrayal a persona judges a topic with (the plan's, which may hold the judged topic out)
    portray: Portrayals = FULL_PORTRAYALS

    @staticmethod
    def persona_major(
        personas: tuple[Persona, ...],
        pairs: tuple[ResponsePair, ...],
        samples: int,
        shard: int = 0,
        portray: Portrayals = FULL_PORTRAYALS,
    ) -> UnitBatch:
        per_persona = len(pairs) * 2 * samples
        return UnitBatch(
            personas=personas,
            pairs=pairs,
            shard=shard,
            persona_idx=np.repeat(np.arange(len(personas), dtype=np.int32), per_persona),
            pair_idx=np.tile(np.repeat(np.arange(len(pairs), dtype=np.int32), 2 * samples), len(personas)),
            order=np.tile(np.repeat(np.arange(2, dtype=np.int8), samples), len(personas) * len(pairs)),
            sample=np.tile(np.arange(samples, dtype=np.int16), len(personas) * len(pairs) * 2),
            portray=portray,
        )

    def __len__(self) -> int:
        return len(self.persona_idx)

    def take(self, rows: np.ndarray) -> UnitBatch:
        """The same shard restricted to some rows (renumbered from 0), e.g. the units a crash left undone."""
        return UnitBatch(
            personas=self.personas,
            pairs=self.pairs,
            shard=self.shard,
            persona_idx=self.persona_idx[rows],
            pair_idx=self.pair_idx[rows],
            order=self.order[rows],
            sample=self.sample[rows],
            portray=self.portray,
        )

    def shown_topics(self) -> tuple[list[tuple[str, ...]], np.ndarray]:
        """The topics whose answers each unit's portrayal shows, as distinct lists and, per unit, the index of its
        list: a portrayal depends on the persona and the item's topic only, so each is asked once per (persona,
        topic), not per unit (a shard holds tens of thousands of units and a handful of topics)."""
        topics = list(dict.fromkeys(pair.item.topic for pair in self.pairs))
        column = {t: i for i, t in enumerate(topics)}
        topic_of_pair = np.array([column[pair.item.topic] for pair in self.pairs], dtype=np.int64)
        lists = [self.portray.shown(p, t) for p in self.personas for t in topics]
        return lists, self.persona_idx.astype(np.int64) * len(topics) + topic_of_pair[self.pair_idx]

    def unit(self, i: int) -> WorkUnit:
        return WorkUnit(
            persona=self.personas[self.persona_idx[i]],
            pair=self.pairs[self.pair_idx[i]],
            order=ORDERS[self.order[i]],
            sample=int(self.sample[i]),
        )

    def __iter__(self) -> Iterator[WorkUnit]:
        return (self.unit(i) for i in range(len(self)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a judge says about one pair in one order: the contract LLM judges must meet."""

    choice: Literal["A", "B", "tie"]
    strength: Annotated[int, Field(ge=1, le=5, description="How strongly the chosen response is preferred")]
    confidence: Annotated[float, Field(ge=0, le=1, description="The judge's own estimate, 0-1")]
    rationale: Annotated[str, Field(max_length=2000)]


VERDICT = TypeAdapter(Verdict)


class LLMVerdict(BaseModel):
    """What a model is asked to return (schemas/verdict.json). Confidence is its own 0-100 estimate."""

    model_config = ConfigDict(extra="forbid", title="verdict")
    rationale: Annotated[str, Field(max_length=300, description="One short sentence, in character")]
    choice: Literal["A", "B", "tie"]
    strength: Annotated[int, Field(ge=1, le=5, description="How strongly the persona prefers its choice")]
    confidence: Annotated[int, Field(ge=0, le=100, description="How sure the judge is, 0-100")]
