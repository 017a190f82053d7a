"""Parquet shards in Hub layout, written atomically (temp file + rename) with the `datasets` defaults."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CONFIGS = ("preferences", "judgments", "personas")
TMP_PREFIX = ".tmp-"  # what a killed writer can leave behind; never data (see dataset.state)
# datasets 5.x defaults: content-defined chunking lets the Hub (Xet) dedupe re-uploads of similar shards
CDC = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def shard_path(out: Path, config: str, index: int, total: int) -> Path:
    return out / "data" / config / f"train-{index:05d}-of-{total:05d}.parquet"


def write_parquet(table: pa.Table, path: Path, row_group_rows: int) -> None:
    """Write then rename: a crash leaves either no file or a complete one, never a torn shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        with pq.ParquetWriter(
            tmp,
            table.schema,
            compression="zstd",
            compression_level=3,
            use_content_defined_chunking=CDC,
            write_page_index=True,
        ) as writer:
            if table.num_rows:  # an empty row group breaks `datasets` (batch size 0); no row group reads fine
                writer.write_table(table, row_group_size=row_group_rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(data: Any, path: Path) -> None:
    """Atomic JSON write, used for run state and shard completion markers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
