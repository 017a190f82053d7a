"""Which split a persona belongs to: a stable hash of its id alone.

Held-out personas measure what a dataset teaches about people it has not seen (FSPO, PAL, PersonalLLM split by
user). The rule depends on ``persona_id`` and the share only, never on the other personas or their order, so a
persona never changes split as the population grows, and every config split by it keeps a persona's rows together.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "test"]


def split_fraction(persona_id: str) -> float:
    """The persona's place in [0, 1): the first 8 bytes of sha256(persona_id), big-endian, over 2**64."""
    digest = hashlib.sha256(persona_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(persona_id: str, test_share: float) -> Split:
    """``test`` when the persona's place falls below ``test_share`` (0 <= share <= 1), else ``train``."""
    if not 0.0 <= test_share <= 1.0:
        raise ValueError(f"test_share must be within [0, 1], not {test_share}")
    return "test" if split_fraction(persona_id) < test_share else "train"
