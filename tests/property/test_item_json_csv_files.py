""".json (a JSON array of objects, or JSON Lines) and .csv item files either load with every text exactly as
written, or are refused with a ConfigError naming the file and the row, line or column. Never a crash."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from polypref.items import load_items
from polypref.records import Item
from tests.property.strategies import item_records, texts
from tests.property.test_items_files import (
    SETTINGS,
    SPEC,
    _assert_exact,
    _assert_sound,
    _load,
    valid_records,
    valid_texts,
)

COLUMNS = ["prompt", "chosen", "rejected"]


def _json(records: list[Any], array: bool, indent: int | None, ascii_only: bool) -> str:
    if array:
        return json.dumps(records, indent=indent, ensure_ascii=ascii_only)
    return "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)


@SETTINGS
@given(records=item_records, array=st.booleans(), indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans())
def test_json_loads_exactly_or_names_the_file(records: list[Any], array: bool, indent: int | None, ascii_only: bool):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.json"
        # surrogatepass: a lone surrogate written raw makes the file not UTF-8, which must be refused too
        path.write_bytes(_json(records, array, indent, ascii_only).encode("utf-8", "surrogatepass"))
        items = _load(path)
    if items is not None:
        _assert_sound(items)
        _assert_exact(items, records)


@SETTINGS
@given(records=valid_records(), array=st.booleans(), indent=st.sampled_from([None, 2]), ascii_only=st.booleans())
def test_valid_json_with_any_texts_loads_exactly(records: list[Any], array: bool, indent: int | None, ascii_only: bool):
    """A JSON array and JSON Lines under a .json name both hold the same items; U+2028 and the like stay text."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.json"
        path.write_text(_json(records, array, indent, ascii_only), encoding="utf-8")
        items = load_items(str(path), SPEC)
    _assert_exact(items, records)


def _csv(rows: list[list[str]], quoting: int, terminator: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=quoting, lineterminator=terminator).writerows(rows)
    return buffer.getvalue()


# a CR alone ends no line of ours, so a writer must quote it: QUOTE_MINIMAL does only with "\r\n" line ends
dialects = st.sampled_from([(csv.QUOTE_MINIMAL, "\r\n"), (csv.QUOTE_ALL, "\n"), (csv.QUOTE_ALL, "\r\n")])


@SETTINGS
@given(
    rows=st.lists(
        st.lists(valid_texts, min_size=3, max_size=3, unique=True),
        min_size=1,
        max_size=4,
        unique_by=lambda row: (row[0], frozenset(row[1:])),  # one item twice is refused: no id tells them apart
    ),
    dialect=dialects,
    bom=st.booleans(),
)
def test_valid_pairwise_csv_with_any_texts_loads_exactly(rows: list[list[str]], dialect: tuple[int, str], bom: bool):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.csv"
        path.write_text(("\ufeff" if bom else "") + _csv([COLUMNS, *rows], *dialect), encoding="utf-8")
        items = load_items(str(path), SPEC)
    _assert_pairs(items, rows)


@st.composite
def damaged_tables(draw: st.DrawFn) -> list[list[str]]:
    """A pairwise table, its columns in any order with others beside them, some cells any text, some rows ragged,
    a column sometimes missing or repeated."""
    extra = draw(st.lists(st.sampled_from(["id", "topic", "", "extra", "prompt"]), max_size=2))
    header = draw(st.permutations([*COLUMNS, *extra]))
    if draw(st.booleans()):
        header = header[: draw(st.integers(1, len(header)))]
    cells = st.one_of(valid_texts, valid_texts, texts)
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        width = len(header) if draw(st.integers(0, 5)) else draw(st.integers(0, len(header) + 1))
        rows.append(draw(st.lists(cells, min_size=width, max_size=width)))
    return [header, *rows]


@SETTINGS
@given(table=damaged_tables(), dialect=dialects)
def test_csv_loads_exactly_or_names_the_file(table: list[list[str]], dialect: tuple[int, str]):
    """Any table: ragged rows, repeated or missing columns, empty and NUL cells, a lone surrogate."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.csv"
        path.write_bytes(_csv(table, *dialect).encode("utf-8", "surrogatepass"))
        items = _load(path)
    if items is not None:
        _assert_sound(items)
        header, *rows = table
        records = [dict(zip(header, row, strict=True)) for row in rows if row]
        paired = all(i.responses for i in items)  # else prompts alone (no chosen and rejected columns)
        _assert_pairs(items, [[r["prompt"], *((r["chosen"], r["rejected"]) if paired else ())] for r in records])


@SETTINGS
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".json", ".csv"]), valid_prefix=st.booleans())
def test_random_bytes_never_crash_the_json_and_csv_readers(data: bytes, suffix: str, valid_prefix: bool):
    prefix = b""
    if valid_prefix:
        prefix = _csv([COLUMNS, ["q", "a", "b"]], csv.QUOTE_MINIMAL, "\n") if suffix == ".csv" else '[{"prompt": "q"}'
        prefix = prefix.encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"items{suffix}"
        path.write_bytes(prefix + data)
        items = _load(path)
    if items is not None:
        _assert_sound(items)


def _assert_pairs(items: tuple[Item, ...], rows: list[list[str]]) -> None:
    """Each row's prompt, chosen and rejected texts, byte for byte."""
    assert [i.prompt.encode() for i in items] == [r[0].encode() for r in rows]
    assert [sorted(x.text.encode() for x in i.responses) for i in items] == [
        sorted(t.encode() for t in r[1:]) for r in rows
    ]
