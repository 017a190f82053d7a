"""Other tools' item files (pairwise, completions, conversational; JSONL or Parquet) either load with every text
exactly as written, or are refused with a ConfigError naming the file and a row or column. Never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref import files
from polypref.errors import ConfigError
from polypref.items import load_items
from polypref.population import load_spec
from polypref.records import Item
from tests.property.strategies import junk, mutated, texts

SPEC = load_spec("gss_spending")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(text: str) -> bool:
    return not files.is_blank(text) and not any(0xD800 <= ord(c) < 0xE000 for c in text)


valid_texts = st.one_of(texts, st.text(min_size=1, max_size=30)).filter(_valid)
roles = st.sampled_from(["system", "user", "assistant"])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": valid_texts}), min_size=1, max_size=3)


@st.composite
def pairwise_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    conversational = draw(st.booleans())
    rows = []
    for index in range(draw(st.integers(1, 4))):
        prompt = draw(messages) if conversational else draw(valid_texts)
        chosen, rejected = draw(st.lists(valid_texts, min_size=2, max_size=2, unique=True))
        if conversational:
            chosen, rejected = ([{"role": "assistant", "content": t}] for t in (chosen, rejected))
        rows.append({"id": f"row-{index}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


@st.composite
def completions_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for index in range(draw(st.integers(1, 4))):
        answers = draw(st.lists(valid_texts, min_size=2, max_size=4, unique=True))
        structured = draw(st.booleans())
        completions = [{"model": f"m{i}", "response": t} for i, t in enumerate(answers)] if structured else answers
        rows.append({"id": f"row-{index}", "instruction": draw(valid_texts), "completions": completions})
    return rows


def _texts(row: dict[str, Any]) -> list[str]:
    """Every text of a valid row, in the order the loaded item holds them: prompt, then responses."""

    def flat(value: Any) -> list[str]:
        return [m["content"] for m in value] if isinstance(value, list) else [value]

    if "completions" in row:
        answers = [c["response"] if isinstance(c, dict) else c for c in row["completions"]]
        return [row["instruction"], *answers]
    return [*flat(row["prompt"]), *flat(row["chosen"]), *flat(row["rejected"])]


def _loaded_texts(item: Item) -> list[str]:
    prompt = [m.content for m in item.messages] if item.messages else [item.prompt]
    return [
        *prompt,
        *(m.content for r in item.responses for m in (r.messages or ())),
        *(r.text for r in item.responses if r.messages is None),
    ]


def _write(folder: Path, rows: list[Any], as_parquet: bool) -> Path:
    if as_parquet:
        path = folder / "items.parquet"
        try:
            pq.write_table(pa.Table.from_pylist(rows), path)
        except (pa.ArrowException, AttributeError, TypeError, ValueError, OverflowError):
            # not a table Arrow can hold, or Parquet can store (an empty struct): test it as JSONL
            path.unlink(missing_ok=True)
            return _write(folder, rows, as_parquet=False)
        return path
    path = folder / "items.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass"))
    return path


def _load(path: Path) -> tuple[Item, ...] | None:
    try:
        items = load_items(str(path), SPEC)
    except ConfigError as e:
        assert e.source.startswith(str(path)) or e.source == "config", e
        assert all(field or reason for field, reason in e.problems)
        event("refused")
        return None
    event("loaded")
    return items


@SETTINGS
@given(rows=st.one_of(pairwise_rows(), completions_rows()), as_parquet=st.booleans())
def test_valid_files_of_other_formats_load_exactly(rows: list[dict[str, Any]], as_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        items = load_items(str(_write(Path(folder), rows, as_parquet)), SPEC)
    assert [i.id for i in items] == [r["id"] for r in rows]
    assert [sorted(_loaded_texts(i)) for i in items] == [sorted(_texts(r)) for r in rows]
    for item in items:
        if "completions" not in rows[0]:
            assert item.label == item.responses[0].id  # the source's chosen


@SETTINGS
@given(
    rows=st.one_of(pairwise_rows(), completions_rows()).flatmap(lambda rows: mutated(rows, junk)),
    as_parquet=st.booleans(),
)
def test_damaged_files_of_other_formats_load_soundly_or_name_the_file(rows: Any, as_parquet: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if not isinstance(rows, list):
            rows = [rows]
        items = _load(_write(Path(folder), rows, as_parquet))
    for item in items or ():
        assert not files.is_blank(item.prompt)
        assert len(item.responses) >= 2 or not item.responses  # none: read as prompts, for generation
        assert len({r.text for r in item.responses}) == len(item.responses)
        assert all(_valid(t) for t in _loaded_texts(item))
