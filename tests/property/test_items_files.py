"""Any items file either loads with every text exactly as written, or is refused with a ConfigError naming it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref import files
from polypref.errors import ConfigError
from polypref.items import load_items
from polypref.items.sources import PARQUET_COLUMNS
from polypref.population.spec import SurveySpec
from polypref.records import Item
from tests.conftest import SCALE, items_records, spec_dict
from tests.property.strategies import BASES, item_records, texts

SPEC = SurveySpec.model_validate(spec_dict())
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_valid_text(text: str) -> bool:
    return not files.is_blank(text) and not any(0xD800 <= ord(c) < 0xE000 for c in text)


valid_texts = st.one_of(texts, st.text(min_size=1)).filter(_is_valid_text)


@st.composite
def valid_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Items the contract accepts, with any texts: every prompt and response text drawn anew, distinct per item."""
    base = draw(st.sampled_from(BASES))
    out = []
    for record in base:
        n = len(record["responses"])
        answers = draw(st.lists(valid_texts, min_size=n, max_size=n, unique=True))
        responses = [{**r, "text": t} for r, t in zip(record["responses"], answers, strict=True)]
        out.append({**record, "prompt": draw(valid_texts), "responses": responses})
    return out


def _load(path: Path) -> tuple[Item, ...] | None:
    """The items, or None when refused; any refusal must be a ConfigError that names the file."""
    try:
        items = load_items(str(path), SPEC)
    except ConfigError as e:
        assert e.source == str(path)
        assert str(e).startswith(f"{path}: invalid")
        event("refused")
        return None
    event("loaded")
    return items


def _assert_sound(items: tuple[Item, ...]) -> None:
    """What loading promises about what it returns, whatever went in."""
    assert len({i.id for i in items}) == len(items)
    for item in items:
        assert not files.is_blank(item.prompt)
        assert len(item.responses) >= 2 or not item.responses  # none: a prompts-only source, for generation
        assert len({r.text for r in item.responses}) == len(item.responses)
        assert len({r.id for r in item.responses}) == len(item.responses)
        assert all(not files.is_blank(r.text) and r.stance in (*SCALE, None) for r in item.responses)
        # stances only on the spec's topics; an item without any is open (judged by LLM backends only)
        assert item.topic in SPEC.attitudes.items or all(r.stance is None for r in item.responses)


def _assert_exact(items: tuple[Item, ...], expected: list[dict[str, Any]]) -> None:
    assert [i.prompt.encode() for i in items] == [r["prompt"].encode() for r in expected]
    assert [[x.text.encode() for x in i.responses] for i in items] == [
        [x["text"].encode() for x in r.get("responses", [])] for r in expected
    ]


@SETTINGS
@given(
    records=item_records,
    ascii_only=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    blank_lines=st.booleans(),
)
def test_jsonl_loads_exactly_or_names_the_file(
    records: list[Any], ascii_only: bool, newline: str, blank_lines: bool
) -> None:
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in records]
    if blank_lines:
        lines = ["", *lines, " \t"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.jsonl"
        # surrogatepass: a lone surrogate written raw makes the file not UTF-8, which must be refused too
        path.write_bytes((newline.join(lines) + newline).encode("utf-8", "surrogatepass"))
        items = _load(path)
    if items is not None:
        _assert_sound(items)
        _assert_exact(items, records)


@SETTINGS
@given(records=valid_records(), ascii_only=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
def test_valid_jsonl_with_any_texts_loads_exactly(records: list[Any], ascii_only: bool, newline: str) -> None:
    """Refusing is not a way out here: U+2028 and the like inside JSON strings are valid JSON Lines."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=ascii_only) + newline for r in records), encoding="utf-8")
        items = load_items(str(path), SPEC)
    _assert_exact(items, records)


@SETTINGS
@given(records=valid_records())
def test_valid_parquet_with_any_texts_loads_exactly(records: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.parquet"
        pl.DataFrame(_rows(records), schema=dict.fromkeys(PARQUET_COLUMNS, pl.String)).write_parquet(path)
        items = load_items(str(path), SPEC)
    _assert_exact(items, records)


@SETTINGS
@given(data=st.binary(max_size=200), valid_prefix=st.booleans())
def test_random_bytes_never_crash_the_jsonl_reader(data: bytes, valid_prefix: bool) -> None:
    prefix = (json.dumps(items_records()[0]) + "\n").encode() if valid_prefix else b""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.jsonl"
        path.write_bytes(prefix + data)
        items = _load(path)
    if items is not None:
        _assert_sound(items)


def _rows(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "item_id": r.get("id"),
            "topic": r.get("topic"),
            "prompt": r.get("prompt"),
            "response_id": x.get("id"),
            "response": x.get("text"),
            "stance": x.get("stance"),
        }
        for r in records
        for x in r["responses"]
    ]


parquet_cells = st.one_of(st.none(), texts.filter(lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)))  # Arrow


@st.composite
def parquet_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows of valid items with some cells replaced (nulls, odd texts, another item's values) and rows shuffled
    or repeated; a column may be missing entirely."""
    rows = _rows(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 4))):
        row = draw(st.sampled_from(rows))
        column = draw(st.sampled_from(PARQUET_COLUMNS))
        row[column] = draw(st.one_of(parquet_cells, st.sampled_from([r[column] for r in rows])))
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    if draw(st.integers(0, 9)) == 0:
        rows = [*rows, dict(draw(st.sampled_from(rows)))]
    if draw(st.integers(0, 9)) == 0:
        dropped = draw(st.sampled_from(PARQUET_COLUMNS))
        rows = [{c: v for c, v in r.items() if c != dropped} for r in rows]
    return rows


@SETTINGS
@given(rows=parquet_rows(), extra_column=st.booleans(), integer_ids=st.booleans())
def test_parquet_loads_exactly_or_names_the_file(
    rows: list[dict[str, Any]], extra_column: bool, integer_ids: bool
) -> None:
    frame = pl.DataFrame({c: pl.Series([r[c] for r in rows], dtype=pl.String) for c in PARQUET_COLUMNS if c in rows[0]})
    if integer_ids and "item_id" in frame.columns:
        frame = frame.with_columns(pl.col("item_id").rank("dense").cast(pl.Int64))
    if extra_column:
        frame = frame.with_columns(note=pl.lit("x"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "items.parquet"
        frame.write_parquet(path)
        items = _load(path)
    if items is None:
        return
    _assert_sound(items)
    # what the file says, read without the loader: rows grouped by item id, in order of first appearance
    expected: dict[Any, dict[str, Any]] = {}
    for row in frame.iter_rows(named=True):
        item = expected.setdefault(row["item_id"], {"topic": row["topic"], "prompt": row["prompt"], "responses": []})
        # one item, one topic and prompt: loading rows that disagree would keep one and lose the other silently
        assert (item["topic"], item["prompt"]) == (row["topic"], row["prompt"])
        item["responses"].append({"text": row["response"]})
    assert None not in expected  # a null item id must not become an item "None"
    _assert_exact(items, list(expected.values()))
