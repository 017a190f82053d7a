"""Which split a persona belongs to: a stable hash of its id alone.

Held-out personas measure what a dataset teaches about people it has not seen (FSPO, PAL, PersonalLLM split by
user). The rule depends on ``persona_id`` and the shares only, never on the other personas or their order, so a
persona never changes split as the population grows, and every config split by it keeps a persona's rows together.

Shares are laid end to end over a persona's place in [0, 1) in a fixed order, test first: the test personas of a
test share are the same whatever other splits are configured (``{train: 0.9, test: 0.1}`` and ``{train: 0.8,
validation: 0.1, test: 0.1}`` hold out the same test personas), and ``split_of(persona_id, share)`` names them.

A build writes each per-persona config as one file per split per shard, side by side in the config's folder:
``data/<config>/<split>-NNNNN.parquet`` (``datasets`` infers the split from such a name even without the card, and
``data/<config>/*.parquet`` still finds every row). The number carries no total, so a refresh renames nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

Split = Literal["train", "validation", "test"]
NAMES: tuple[Split, ...] = ("train", "validation", "test")  # how files, cards and summaries list them
ORDER: tuple[Split, ...] = ("test", "validation", "train")  # how shares are laid over [0, 1): test first
DEFAULT_SHARES: dict[str, float] = {"train": 0.9, "test": 0.1}
TOLERANCE = 1e-9  # how far the shares may sum from 1 (0.7 + 0.2 + 0.1 is 0.9999999999999999)
# the configs every build writes with a row per persona (or per persona and pair), one file per split (the
# optional episodes config is split alike; distributions count each split's personas apart); the others are not
# about the personas' labels and stay one split, train
PERSONA_CONFIGS = ("preferences", "judgments", "personas", "weights", "review")
WHOLE_CONFIGS = ("pairs", "map")
FILE_NAME = re.compile(r"(?P<split>train|validation|test)-(?P<index>\d{5,})\.parquet")


def split_fraction(persona_id: str) -> float:
    """The persona's place in [0, 1): the first 8 bytes of sha256(persona_id), big-endian, over 2**64."""
    digest = hashlib.sha256(persona_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(persona_id: str, test_share: float) -> Literal["train", "test"]:
    """``test`` when the persona's place falls below ``test_share`` (0 <= share <= 1), else ``train``."""
    if not 0.0 <= test_share <= 1.0:
        raise ValueError(f"test_share must be within [0, 1], not {test_share}")
    return "test" if split_fraction(persona_id) < test_share else "train"


def shot_order(seed: int, persona_id: str, pair_id: str) -> bytes:
    """Sorts a persona's labels in a seeded order that depends on nothing else (not the other personas, not the
    shard layout), so its shots never change as the dataset grows: what ``polypref evaluate`` and the
    ``episodes`` config take as a persona's first k labels."""
    return hashlib.sha256(f"{seed}\0{persona_id}\0{pair_id}".encode()).digest()


def check_shares(shares: Mapping[str, float]) -> dict[str, float]:
    """The shares as given, if they are a split assignment: known names, shares >= 0 that sum to 1 (within
    ``TOLERANCE``). ValueError saying what is wrong otherwise."""
    if not shares:
        raise ValueError("name at least one split, e.g. {train: 1.0}")
    if unknown := [name for name in shares if name not in NAMES]:
        raise ValueError(f"unknown split {unknown[0]!r} (allowed: {', '.join(NAMES)})")
    for name, share in shares.items():
        if not math.isfinite(share) or share < 0:
            raise ValueError(f"the share of {name} must be a number >= 0, not {share!r}")
    total = math.fsum(shares.values())
    if abs(total - 1.0) > TOLERANCE:
        raise ValueError(f"the shares must sum to 1, not {total!r}")
    return dict(shares)


def assign(persona_id: str, shares: Mapping[str, float]) -> Split:
    """The split of a persona: the first split in ``ORDER`` whose end (the shares so far) lies above its place."""
    place = split_fraction(persona_id)
    end = 0.0
    last: Split | None = None
    for name in ORDER:
        if (share := shares.get(name, 0.0)) > 0:
            end += share
            last = name
            if place < end:
                return name
    if last is None:
        raise ValueError("no split has a share above 0")
    return last  # shares summing to a hair under 1: the top of [0, 1) goes to the last split


def present(persona_ids: Iterable[str], shares: Mapping[str, float]) -> tuple[Split, ...]:
    """The splits the personas fall in, in ``NAMES`` order: the files a set of personas is written to."""
    wanted = {name for name in NAMES if shares.get(name, 0.0) > 0}
    found: set[Split] = set()
    for persona_id in persona_ids:
        found.add(assign(persona_id, shares))
        if found == wanted:  # every split a share names: a population of 10^6 needs only its first few
            break
    return tuple(name for name in NAMES if name in found)


def split_column(persona_ids: pl.Series, shares: Mapping[str, float]) -> pl.Series:
    """Each row's split, hashing each distinct persona once (a shard holds many rows per persona)."""
    unique = persona_ids.unique().to_list()
    of = {p: assign(p, shares) for p in unique}
    return persona_ids.replace_strict(of, return_dtype=pl.String).alias("split")


def by_split(frame: pl.DataFrame, shares: Mapping[str, float], splits: Sequence[str]) -> list[tuple[str, pl.DataFrame]]:
    """The frame's rows for each of ``splits`` (by their ``persona_id``), in their order; a split whose
    personas have no row gets an empty frame with the columns, so its file still says what it holds."""
    if frame.is_empty():
        return [(name, frame) for name in splits]
    column = split_column(frame["persona_id"], shares)
    return [(name, frame.filter(column == name)) for name in splits]


def split_files(folder: Path, splits: Iterable[str] = NAMES) -> list[Path]:
    """A config folder's data files of the given splits, by name (never a writer's temp file)."""
    wanted = set(splits)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if (m := FILE_NAME.fullmatch(p.name)) and m["split"] in wanted and p.is_file()
    )


def split_rows(out: Path, configs: Iterable[str]) -> dict[str, dict[str, int]]:
    """Rows per split of each config, from the files' footers: what a card may declare (a split of no rows
    does not load)."""
    rows: dict[str, dict[str, int]] = {}
    for config in configs:
        counts = {name: 0 for name in NAMES}
        for path in split_files(out / "data" / config):
            counts[FILE_NAME.fullmatch(path.name)["split"]] += pq.read_metadata(path).num_rows  # type: ignore[index]
        rows[config] = {name: n for name, n in counts.items() if n}
    return rows


def summary(out: Path, shares: Mapping[str, float], configs: Iterable[str]) -> dict[str, object]:
    """What a build's summary says of its splits: the shares and the rows of each config in each split."""
    return {"shares": dict(shares), "rows": split_rows(out, configs)}
