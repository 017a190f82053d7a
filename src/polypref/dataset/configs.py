"""The configs a dataset publishes and where their shards go (Hub layout)."""

from __future__ import annotations

from pathlib import Path

CONFIGS = ("preferences", "judgments", "personas", "pairs", "weights", "review", "map", "distributions", "episodes")
# made anew over the whole dataset at the end of every build (the rest are written shard by shard)
FINAL_CONFIGS = ("pairs", "weights", "review", "map", "distributions", "episodes")


def shard_path(out: Path, config: str, index: int, split: str = "train") -> Path:
    """Without the total in the name (train-00003-of-00012): a refresh adds shards and renames none. A config
    split by persona (splits.py) has a file per split beside it: test-00003.parquet."""
    return out / "data" / config / f"{split}-{index:05d}.parquet"
