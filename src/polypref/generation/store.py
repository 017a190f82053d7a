"""Generated responses on disk: one Parquet file per finished micro-batch, one row per response slot.

Files are written by temp file + rename (``files``), so a killed run leaves complete files or
``.tmp-*`` leftovers, which are removed and never read. Failed slots are saved too, with their error and last
output, for diagnosis; only usable rows made under the current settings are reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from polypref.errors import OutputError
from polypref.files import TMP_PREFIX, write_parquet
from polypref.records import content_hash

STORE_COLUMNS: dict[str, pl.DataType] = {
    "response_id": pl.String(),
    "item_id": pl.String(),
    "generator": pl.Int16(),  # index in generate.generators
    "model": pl.String(),
    "settings": pl.String(),  # the generator's settings_key when it was made
    "prompt": pl.String(),  # hash of the messages sent: an item whose prompt was edited under its id is redone
    "text": pl.String(),  # the last output, for a failed slot too (say, truncated); null when none came
    "finish_reason": pl.String(),
    "error": pl.String(),  # "<category>: detail"; null = a usable response
    "prompt_tokens": pl.Int32(),  # summed over attempts, earlier runs' included
    "completion_tokens": pl.Int32(),
    "attempts": pl.Int16(),  # requests made for the slot, earlier runs' included
}


def load_store(store: Path) -> pl.DataFrame:
    """Every saved row (STORE_COLUMNS), failed ones included; killed writers' temp files are removed."""
    if not store.is_dir():
        return pl.DataFrame(schema=STORE_COLUMNS)
    frames = []
    for path in sorted(store.glob("*.parquet")):
        if path.name.startswith(TMP_PREFIX):
            path.unlink(missing_ok=True)
            continue
        try:
            frames.append(pl.read_parquet(path).select(list(STORE_COLUMNS)).cast(STORE_COLUMNS))
        except Exception as e:  # written atomically by us: a bad one was put there or damaged on disk
            raise OutputError(
                f"{path}: not a readable file of generated responses ({str(e)[:200]}); "
                "delete it to generate its responses again"
            ) from None
    return pl.concat(frames) if frames else pl.DataFrame(schema=STORE_COLUMNS)


def current_rows(saved: pl.DataFrame, expected: pl.DataFrame) -> tuple[dict[str, dict], dict[str, dict]]:
    """(usable, failed) rows by response id, of those made for the same slot, settings and prompt as
    ``expected`` (columns response_id, settings, prompt) asks for. A slot saved as failed and later as usable
    counts as usable; of several failures, the one with the most attempts."""
    rows = saved.join(expected, on=["response_id", "settings", "prompt"], how="semi").sort("attempts")
    usable = rows.filter(pl.col("error").is_null())
    failed = rows.filter(pl.col("error").is_not_null() & ~pl.col("response_id").is_in(usable["response_id"].implode()))
    return _by_id(usable), _by_id(failed)


def _by_id(rows: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["response_id"]: row for row in rows.unique("response_id", keep="last").iter_rows(named=True)}


def save_micro_batch(store: Path, generator: int, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """One file per micro-batch, named by its slots and settings: a rerun's micro-batch of the same failed slots
    replaces their failure file, and never a file holding anything else."""
    name = f"{generator:03d}-{content_hash(key, *(r['response_id'] for r in rows))}.parquet"
    write_parquet(pl.DataFrame(list(rows), schema=STORE_COLUMNS).to_arrow(), store / name, row_group_rows=50_000)
