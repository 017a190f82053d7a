"""Which shards a build folder holds, and how a grown build adds shards without touching the ones it has.

A layout is a list of parts. A part is a rectangle of work, personas ``[start, end)`` of the population times a
list of pairs, cut into shards of ``personas_per_shard`` personas numbered from ``first_shard`` (and, where one
persona's pairs outgrow a shard, of one persona times ``pairs_per_shard`` pairs). A first build
is one part. A later build with the same settings (``fingerprint.build_fingerprint``) whose population begins
with the folder's personas and whose pairs include the folder's pairs adds at most two parts: the new pairs
for the personas already there, and every pair for the new personas. Every shard already written stays as it
is, byte for byte, so a push uploads only the new ones. Anything else (a pair gone or changed, a population
that shrank or was drawn differently) is laid out anew; the judgment store still saves every request.

Plain data, no I/O: ``build.state`` keeps a layout on disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    personas: tuple[int, int]  # [start, end) in the population's order
    pairs: tuple[str, ...]  # content digests of the part's pairs, in the order its shards hold them
    personas_per_shard: int
    first_shard: int
    run_id: str | None = None  # the run that added the part (None: added by the build being planned)
    created_at: str | None = None
    # None: every shard holds all the part's pairs. A number: one persona's pairs are more than a shard holds
    # (a source of 10^5-10^6 items), so each persona's pairs are cut into blocks of this many, persona-major
    pairs_per_shard: int | None = None

    @property
    def _pair_blocks(self) -> int:
        return math.ceil(len(self.pairs) / self.pairs_per_shard) if self.pairs_per_shard else 1

    @property
    def num_shards(self) -> int:
        return math.ceil((self.personas[1] - self.personas[0]) / self.personas_per_shard) * self._pair_blocks

    def shard_personas(self, index: int) -> tuple[int, int]:
        """The personas ``[start, end)`` of the build's shard ``index`` (one of this part's)."""
        start = self.personas[0] + (index - self.first_shard) // self._pair_blocks * self.personas_per_shard
        return start, min(start + self.personas_per_shard, self.personas[1])

    def shard_pairs(self, index: int) -> tuple[str, ...]:
        """The pairs (digests) of the build's shard ``index``; every order and sample of a pair stays in one."""
        return self.pairs[slice(*self.shard_pair_range(index))]

    def shard_pair_range(self, index: int) -> tuple[int, int]:
        """The shard's pairs as ``[start, end)`` of the part's."""
        if not self.pairs_per_shard:
            return 0, len(self.pairs)
        start = (index - self.first_shard) % self._pair_blocks * self.pairs_per_shard
        return start, min(start + self.pairs_per_shard, len(self.pairs))


@dataclass(frozen=True)
class Layout:
    personas: tuple[str, ...]  # content digests of the personas the parts cover: [0, len) of the population
    parts: tuple[Part, ...]

    @property
    def num_shards(self) -> int:
        return sum(p.num_shards for p in self.parts)

    @property
    def pairs(self) -> tuple[str, ...]:
        """Every pair the layout covers, in the order the parts added them."""
        return tuple(d for part in self.parts if part.personas[0] == 0 for d in part.pairs)

    def part_of(self, shard: int) -> Part:
        for part in self.parts:
            if part.first_shard <= shard < part.first_shard + part.num_shards:
                return part
        raise IndexError(f"no shard {shard} in a layout of {self.num_shards}")

    def units(self, samples: int) -> int:
        return sum((p.personas[1] - p.personas[0]) * len(p.pairs) * 2 * samples for p in self.parts)


def lay_out(
    previous: Layout | None, personas: Sequence[str], pairs: Sequence[str], units_per_shard: int, samples: int
) -> tuple[Layout, bool]:
    """The layout for a build of ``personas`` x ``pairs`` (content digests, in plan order), and whether it
    keeps ``previous`` (a folder's layout built with the same settings; None when there is none)."""
    if previous is not None and _grows(previous, personas, pairs):
        old_pairs = set(previous.pairs)
        parts = list(previous.parts)
        new_pairs = tuple(d for d in pairs if d not in old_pairs)
        old_personas = len(previous.personas)
        if new_pairs and old_personas:
            parts.append(_part((0, old_personas), new_pairs, units_per_shard, samples, _next_shard(parts)))
        if len(personas) > old_personas and pairs:
            added = (old_personas, len(personas))
            parts.append(_part(added, tuple(pairs), units_per_shard, samples, _next_shard(parts)))
        return Layout(tuple(personas), tuple(parts)), True
    parts = [_part((0, len(personas)), tuple(pairs), units_per_shard, samples, 0)] if personas and pairs else []
    return Layout(tuple(personas), tuple(parts)), False


def _grows(previous: Layout, personas: Sequence[str], pairs: Sequence[str]) -> bool:
    """Whether the new build only adds to ``previous``: its personas first, its pairs all still there."""
    n = len(previous.personas)
    return tuple(personas[:n]) == previous.personas and set(previous.pairs) <= set(pairs)


def _part(personas: tuple[int, int], pairs: tuple[str, ...], units_per_shard: int, samples: int, first: int) -> Part:
    per_persona = len(pairs) * 2 * samples
    if per_persona <= units_per_shard:
        return Part(personas, pairs, units_per_shard // per_persona, first)
    return Part(personas, pairs, 1, first, pairs_per_shard=pairs_per_shard(units_per_shard, samples))


def pairs_per_shard(units_per_shard: int, samples: int) -> int:
    """Pairs of one persona that fill a shard (both orders, every sample of each)."""
    return max(1, units_per_shard // (2 * samples))


def _next_shard(parts: Sequence[Part]) -> int:
    return sum(p.num_shards for p in parts)
