"""Pair responses per prompt: all pairs, or k random pairs per prompt (seeded)."""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np

from polypref.records import Item, ResponsePair


def make_pairs(
    items: tuple[Item, ...], pairing: Literal["all", "random"] = "all", k: int = 3, seed: int = 0
) -> tuple[ResponsePair, ...]:
    pairs: list[ResponsePair] = []
    for index, item in enumerate(items):
        candidates = list(combinations(item.responses, 2))
        if pairing == "random" and k < len(candidates):
            rng = np.random.default_rng([seed, index])
            chosen = sorted(rng.choice(len(candidates), size=k, replace=False))
            candidates = [candidates[i] for i in chosen]
        pairs.extend(ResponsePair.of(item, a, b) for a, b in candidates)
    return tuple(pairs)
