"""Issue 25, item 14: with ``items.on_error: skip`` a source with bad rows loads exactly its good rows, and every
row left out is listed where it is, once; with ``fail`` it is refused naming the file and its first unreadable row
(else its first invalid one).
``items.drop_duplicates`` drops exactly the repeats of rows read before."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polypref import files
from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items import read_items
from polypref.population.spec import SurveySpec
from tests.conftest import spec_dict

SPEC = SurveySpec.model_validate(spec_dict())
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# a row of each kind, as (JSONL line, what reading it must do): "ok", or how it is left out
texts = st.text(min_size=1, max_size=12).filter(
    lambda t: not files.is_blank(t) and not any(0xD800 <= ord(c) < 0xE000 for c in t)
)
BAD = {
    "bad_json": lambda row: json.dumps(row)[:-1],  # cut off: not JSON
    "not_an_object": lambda row: json.dumps([row["prompt"]]),
    "empty_rejected": lambda row: json.dumps({**row, "rejected": " "}),
    "same_texts": lambda row: json.dumps({**row, "rejected": row["chosen"]}),
}
LEFT_OUT = {"bad_json": "unreadable", "not_an_object": "unreadable", "empty_rejected": "invalid rejected"}
LEFT_OUT["same_texts"] = "invalid rejected"


@st.composite
def sources(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any] | None], list[str | None]]:
    """JSONL lines, and per line the row it must load as (None: left out) and why it is left out (None: kept)."""
    lines: list[str] = []
    kept: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    good: list[str] = []
    for index in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["ok", "ok", "repeat", *BAD]))
        chosen, rejected = draw(st.lists(texts, min_size=2, max_size=2, unique=True))
        row = {"prompt": f"Q{index}: {draw(texts)}", "chosen": chosen, "rejected": rejected}
        if kind == "repeat" and good:
            lines.append(draw(st.sampled_from(good)))
            kept.append(None)
            reasons.append("duplicate")
        elif kind in BAD:
            lines.append(BAD[kind](row))
            kept.append(None)
            reasons.append(LEFT_OUT[kind])
        else:
            lines.append(json.dumps(row))
            good.append(lines[-1])
            kept.append(row)
            reasons.append(None)
    return lines, kept, reasons


FOLDER = Path(tempfile.mkdtemp(prefix="polypref-skip-"))
PATH = FOLDER / "items.jsonl"


def _read(lines: list[str], **settings: Any):
    PATH.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return read_items(ItemsConfig(source=str(PATH), format="pairwise", **settings), SPEC)


def _texts(items) -> list[tuple[str, str, str]]:
    return [(i.prompt, i.responses[0].text, i.responses[1].text) for i in items]


@SETTINGS
@given(source=sources(), drop_duplicates=st.booleans())
def test_skip_loads_exactly_the_good_rows_and_lists_every_other(source, drop_duplicates: bool) -> None:
    lines, kept, reasons = source
    if all(row is None for row in kept):  # no items (or, every row unreadable, not even the format's columns)
        with pytest.raises(ConfigError) as refused:
            _read(lines, on_error="skip", drop_duplicates=drop_duplicates)
        assert refused.value.source == str(PATH)
        return
    loaded = _read(lines, on_error="skip", drop_duplicates=drop_duplicates)
    assert _texts(loaded.items) == [(r["prompt"], r["chosen"], r["rejected"]) for r in kept if r is not None]
    left = [(f"{PATH} line {n}", why) for n, why in enumerate(reasons, start=1) if why is not None]
    assert [(r["row"], _reason(r)) for r in loaded.skipped.rows] == left
    assert sum(loaded.skipped.counts.values()) == len(left)


@SETTINGS
@given(source=sources(), drop_duplicates=st.booleans())
def test_fail_refuses_naming_the_first_bad_row_or_loads_every_row(source, drop_duplicates: bool) -> None:
    lines, kept, reasons = source
    bad = [n for n, why in enumerate(reasons, start=1) if why not in (None, "duplicate")]
    repeats = [n for n, why in enumerate(reasons, start=1) if why == "duplicate"]
    if bad or (repeats and not drop_duplicates):
        with pytest.raises(ConfigError) as refused:
            _read(lines, drop_duplicates=drop_duplicates)
        assert refused.value.source == str(PATH)
        if bad:  # met before any repeat: a row that cannot be read on the pass for keys, then an invalid one
            unreadable = [n for n in bad if reasons[n - 1] == "unreadable"]
            assert refused.value.problems[0][0].split(":")[0] == f"line {(unreadable or bad)[0]}"
        return
    loaded = _read(lines, drop_duplicates=drop_duplicates)
    assert _texts(loaded.items) == [(r["prompt"], r["chosen"], r["rejected"]) for r in kept if r is not None]
    assert [r["row"] for r in loaded.skipped.rows] == [f"{PATH} line {n}" for n in repeats]


def _reason(row: dict[str, Any]) -> str:
    return f"{row['kind']} {row['column']}" if row["kind"] == "invalid" else row["kind"]
