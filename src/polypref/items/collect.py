"""The records read of an item source as Items, one by one: where each was read, the rows left out (bad ones with
``items.on_error: skip``, repeats with ``items.drop_duplicates``), the kept columns' values, and unique ids.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from polypref.errors import ConfigError
from polypref.items import labels, rows
from polypref.items.convert import POLYPREF_KEYS
from polypref.items.formats import parse
from polypref.items.layout import Layout
from polypref.items.segments import Record
from polypref.items.texts import RowError
from polypref.population.spec import SurveySpec
from polypref.records import Item

KEPT_KEY = "\x00item_id"  # the item's id in LoadedItems.kept: no source column is called so


class Origins:
    """Where each item was read ("items.jsonl line 3", "data.json row 3 (line 5)"), held as the text around its
    numbers (shared by every row of a file) and the numbers: the text is made only when an error names an item
    (a source of 10^6 items would hold ~70 MB of these strings)."""

    _NUMBER = re.compile(r"(?<= )(?:0|[1-9][0-9]*)(?![0-9])")  # "line 3", not a file name's "train-00000"

    def __init__(self) -> None:
        self._index: dict[tuple[str, ...], int] = {}
        self._texts: list[tuple[str, ...]] = []
        self._heads: dict[str, tuple[int, list[int]]] = {}  # "FILE row" -> its text's index, its numbers
        self._text = array("L")
        self._start = array("q")
        self._numbers = array("q")

    def append(self, where: str) -> None:
        head, space, last = where.rpartition(" ")
        if space and last.isascii() and last.isdigit() and (last[0] != "0" or last == "0"):
            # "FILE row 17": every row of a file differs in its last number alone, so the rest is split once
            if head not in self._heads:
                text, numbers = self._split(f"{head} 0")
                self._heads[head] = text, numbers[:-1]
            text, numbers = self._heads[head]
            numbers = [*numbers, int(last)]
        else:
            text, numbers = self._split(where)
        self._text.append(text)
        self._start.append(len(self._numbers))
        self._numbers.extend(numbers)

    def _split(self, where: str) -> tuple[int, list[int]]:
        """The index of ``where``'s text around its numbers (kept once however many rows share it), its numbers."""
        text = tuple(self._NUMBER.split(where))
        if text not in self._index:
            self._index[text] = len(self._texts)
            self._texts.append(text)
        return self._index[text], [int(n) for n in self._NUMBER.findall(where)]

    def __len__(self) -> int:
        return len(self._text)

    def __getitem__(self, index: int) -> str:
        text, start = self._texts[self._text[index]], self._start[index]
        numbers = [str(n) for n in self._numbers[start : start + len(text) - 1]]
        return "".join(part + number for part, number in zip(text, [*numbers, ""], strict=True))


class Items(tuple[Item, ...]):
    """The items read, with where each was read and the source's columns no field read: checks made after
    reading (``check_judgeable``) name an item as the user knows it, not by a content hash."""

    origins: Origins | None = None
    unread: tuple[str, ...] = ()
    kept: pl.DataFrame | None = None  # see LoadedItems.kept


class Skipped:
    """Rows of a source left out rather than refused (``items.on_error: skip``, ``items.drop_duplicates``): each
    with where it is and why, and counts by reason: ``unreadable``, ``invalid COLUMN`` (the source's column that
    held the bad value) or ``duplicate``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str | None]] = []
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, row: str, column: str | None, reason: str) -> None:
        self.rows.append({"row": row, "kind": kind, "column": column, "reason": reason})
        # by the source's column, not the value inside it: "completions.3.score" counts as "completions.score"
        named = re.sub(r"\.[0-9]+(?=\.|$)", "", column) if column else None
        self.counts[f"{kind} {named}" if kind == "invalid" and named else kind] += 1

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Drops:
    """What reading may leave out instead of refusing: bad rows (``bad``), repeated items (``duplicates``)."""

    bad: bool
    repeats: bool
    skipped: Skipped

    @property
    def duplicates(self) -> bool:
        """Whether repeats are dropped as read: asked for, or bad rows are skipped (a repeat is one)."""
        return self.bad or self.repeats


def to_items(
    name: str,
    layout: Layout,
    read: Callable[[], Iterator[Record]],
    spec: SurveySpec,
    single: bool,
    drops: Drops,
    kept: Sequence[str] = (),
) -> tuple[Items, dict[str, bool]]:
    """Each record as an Item, with where it was read, and the label keys the rows hold (see
    ``labels.label_keys``): whether each ever held a value. Rows ``drops`` allows leaving out are recorded in
    ``drops.skipped`` instead of refused; the ``kept`` columns' values are gathered per item, as text."""
    items: list[Item] = []
    origins = Origins()
    seen: dict[str, bool] = {}
    first: dict[str, int] = {}  # item id -> its index, while repeats are dropped as read
    values: dict[str, list[str | None]] = {c: [] for c in kept}
    for record in read():
        where = f"{name} {record.where}" if single else record.where
        try:
            item = _item(name, layout, record, spec, kept)
        except _BadRow as e:
            if not drops.bad:
                raise e.error from None
            drops.skipped.add(e.kind, where, e.column, e.reason)
            continue
        if drops.duplicates:
            index = first.setdefault(item.id, len(items))
            if index != len(items):
                what = "the same item (prompt and responses)" if _unnamed(record) else f"item id {item.id!r}"
                drops.skipped.add("duplicate", where, None, f"{what} as at {origins[index]}")
                continue
        items.append(item)
        origins.append(where)
        for column, held in values.items():
            held.append(_as_text(record.data.get(column)) if isinstance(record.data, dict) else None)
        if isinstance(record.data, dict):
            for key, valued in labels.label_keys(layout, record.data).items():
                seen[key] = seen.get(key, False) or valued
    converted = Items(items)
    converted.origins = origins
    if kept:
        ids = pl.Series(KEPT_KEY, [i.id for i in items], dtype=pl.String)  # a kept column may be called prompt_id
        converted.kept = pl.DataFrame([ids, *(pl.Series(c, v, dtype=pl.String) for c, v in values.items())])
    return converted, seen


def _as_text(value: Any) -> str | None:
    """A kept column's value as published: a text as it is, numbers, lists and objects as JSON, other values
    (Parquet's dates, times, decimals) as their own text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class _BadRow(Exception):
    """A row that cannot be an item: the error refusing it, and how a skip records it."""

    def __init__(self, error: ConfigError, kind: str, column: str | None, reason: str):
        super().__init__(str(error))
        self.error, self.kind, self.column, self.reason = error, kind, column, reason


def _item(name: str, layout: Layout, record: Record, spec: SurveySpec, kept: Sequence[str] = ()) -> Item:
    data = record.data
    if isinstance(data, rows.Unreadable):
        raise _BadRow(data.error, "unreadable", None, data.error.problems[0][1])
    if not isinstance(data, dict):
        reason = f"expected an object, got {type(data).__name__}"
        raise _BadRow(ConfigError(name, [(record.where, reason)]), "unreadable", None, reason)
    if kept and layout.name == "polypref":  # its own format refuses unknown keys: kept ones are not unknown
        data = {k: v for k, v in data.items() if k not in kept or k in POLYPREF_KEYS}
    try:
        return parse(layout, data, spec)
    except RowError as e:
        reason = e.describe(record.response)
        raise _BadRow(ConfigError(name, [(record.field(e.column), reason)]), "invalid", e.column, reason) from None


def _unnamed(record: Record) -> bool:
    """Whether the row gave no id of its own (its item is known by its texts)."""
    return isinstance(record.data, dict) and record.data.get("id") is None


def check_unique_ids(name: str, records: Callable[[], Iterator[Record]], items: list[Item]) -> None:
    counts = Counter(i.id for i in items)  # linear: item files can hold many thousands of items
    if all(n == 1 for n in counts.values()):
        return
    # rare: read the rows again to name where each repeat is
    repeated = [(record, item) for record, item in zip(records(), items, strict=True) if counts[item.id] > 1]
    if repeated:
        first, item = repeated[0]
        others = [r.where for r, i in repeated[1:] if i.id == item.id]
        hashed = any(isinstance(r.data, dict) and r.data.get("id") is None for r, i in repeated if i.id == item.id)
        also = ", ".join(others[:5])
        reason = (  # a content hash means nothing to the user: name the rows, and what makes them one item
            f"the same item (prompt and responses) is at {also} too; an item without an id is known by its texts: "
            "drop the repeat, or give each an id"
            if hashed
            else f"item id {item.id!r} is used again at {also}"
        )
        raise ConfigError(name, [(f"{first.where}: id", reason)])
