"""polypref's flat Parquet layout: one response per row, grouped into items by ``item_id``.

Columns ``item_id, topic, prompt, response_id, response, stance`` and no others; ``item_id`` is required, and
every row of an item gives the same topic and prompt. A file is read whole (an item's rows may span row groups),
and errors name its rows by index from 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from polypref import files
from polypref.errors import ConfigError
from polypref.items.formats import FLAT_COLUMNS


class FlatItem(NamedTuple):
    """One item of the layout as a polypref record, and the row each of its responses was read from."""

    where: str  # "item_id 'q1'", or with the file's name when the source has several
    data: dict[str, Any]  # {"id", "topic", "prompt", "responses": [{"id", "text", "stance"}]}
    rows: tuple[int, ...]


def read_flat_parquet(path: Path, shown: str, several: bool, start: int = 0, stop: int | None = None) -> list[FlatItem]:
    """The items of one file, in order of first appearance. ``shown``: how errors name the file; ``several``: the
    source has other files, so items name theirs; rows [start, stop) only (a sliced split)."""
    files.check_file(path)
    try:
        frame = pl.read_parquet(path)
    except Exception as e:
        raise ConfigError(shown, [("", f"cannot read Parquet: {e}")]) from None
    missing = [c for c in FLAT_COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in FLAT_COLUMNS]
    if missing or extra:
        wrong = ", ".join(
            f"{what} columns {names}" for what, names in (("missing", missing), ("unknown", extra)) if names
        )
        raise ConfigError(shown, [("", f"{wrong}; expected exactly {list(FLAT_COLUMNS)}")])
    frame = frame.select(_parquet_column(shown, frame, c) for c in FLAT_COLUMNS).with_row_index("_row")
    frame = frame.slice(start, None if stop is None else max(stop - start, 0))
    no_id = frame.filter(pl.col("item_id").is_null())["_row"].to_list()
    if no_id:
        raise ConfigError(
            shown,
            [("item_id", f"{len(no_id)} rows have no item_id (rows {no_id[:10]}); it groups rows into items")],
        )
    _check_consistent_items(shown, frame)
    records = []
    for (item_id,), group in frame.group_by("item_id", maintain_order=True):
        first = group.row(0, named=True)
        responses = [
            {"id": r["response_id"], "text": r["response"], "stance": r["stance"]} for r in group.iter_rows(named=True)
        ]
        data = {"id": item_id, "topic": first["topic"], "prompt": first["prompt"], "responses": responses}
        where = f"{shown}: item_id {item_id!r}" if several else f"item_id {item_id!r}"
        records.append(FlatItem(where, data, tuple(group["_row"].to_list())))
    return records


def _parquet_column(shown: str, frame: pl.DataFrame, name: str) -> pl.Expr:
    """Text columns as text; ids may also be integers (read as their decimal text), never floats or bytes."""
    dtype = frame[name].dtype
    ids = name in ("item_id", "response_id")
    if dtype in (pl.String, pl.Null) or isinstance(dtype, pl.Categorical | pl.Enum) or (ids and dtype.is_integer()):
        return pl.col(name).cast(pl.String)
    expected = "text or integers" if ids else "text"
    raise ConfigError(shown, [(name, f"column holds {dtype}, expected {expected}")])


def _check_consistent_items(shown: str, frame: pl.DataFrame) -> None:
    """An item's topic and prompt are repeated on each of its rows: rows that disagree are two items under one
    id, and keeping the first row's would silently drop the others."""
    counts = frame.group_by("item_id", maintain_order=True).agg(
        pl.col("topic").n_unique(), pl.col("prompt").n_unique(), pl.col("_row")
    )
    problems = [
        (f"item_id {item_id!r}: {column}", f"rows {at[:10]} give {n} different values; an item has one {column}")
        for item_id, topics, prompts, at in counts.iter_rows()
        for column, n in (("topic", topics), ("prompt", prompts))
        if n > 1
    ]
    if problems:
        raise ConfigError(shown, problems[:10])
