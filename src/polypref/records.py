"""The nouns of a build: personas, responses, pairs, work units and verdicts.

Objects up to the judge, columns after it: personas and pairs are few and rich, so they are frozen
dataclasses; judgments are many and thin, so judges return columns (see ``judges.base``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

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
class Response:
    id: str
    text: str
    stance: str  # a label of the topic's answer scale
    position: float  # the stance's place on the scale, 0..1


@dataclass(frozen=True, slots=True)
class Item:
    """A user prompt on one topic with several responses that take different stances."""

    id: str
    topic: str
    prompt: str
    responses: tuple[Response, ...]


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

    @staticmethod
    def persona_major(
        personas: tuple[Persona, ...], pairs: tuple[ResponsePair, ...], samples: int, shard: int = 0
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
        )

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
