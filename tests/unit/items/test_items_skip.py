"""Issue 25, item 14: ``items.on_error: skip`` in every file format: a row that cannot be read is left out in its
place (a limit still counts it), while damage that breaks the file around it is still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items import read_items
from polypref.population.spec import SurveySpec
from tests.conftest import spec_dict

SPEC = SurveySpec.model_validate(spec_dict())
ROWS = [{"prompt": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(3)]


def _read(path: Path, **settings: object):
    return read_items(ItemsConfig(source=str(path), format="pairwise", **settings), SPEC)


def test_a_csv_line_with_the_wrong_cells_is_skipped_in_its_place(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\nQ0,yes 0,no 0\nQx,only two\nQ2,yes 2,no 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3: 2 cells, but the header names 3 columns"):
        _read(path)
    loaded = _read(path, on_error="skip")
    assert [i.prompt for i in loaded.items] == ["Q0", "Q2"]
    assert [(r["row"], r["kind"]) for r in loaded.skipped.rows] == [(f"{path} line 3", "unreadable")]
    limited = _read(path, on_error="skip", limit=2)  # the first two rows, the bad one among them
    assert [i.prompt for i in limited.items] == ["Q0"]


def test_a_json_array_value_that_is_not_an_object_is_skipped_but_broken_json_is_refused(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([ROWS[0], "a string", ROWS[2]], indent=1), encoding="utf-8")
    loaded = _read(path, on_error="skip")
    assert [i.prompt for i in loaded.items] == ["Q0", "Q2"]
    assert loaded.skipped.rows[0]["row"].startswith(f"{path} row 1 ") and loaded.skipped.counts == {"unreadable": 1}
    path.write_text(json.dumps([ROWS[0], ROWS[2]])[:-1], encoding="utf-8")  # the array never closes
    with pytest.raises(ConfigError, match="invalid JSON"):
        _read(path, on_error="skip")


def test_a_line_that_is_not_utf8_is_skipped_in_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [json.dumps(ROWS[0]).encode(), b'{"prompt": "\xff"}', json.dumps(ROWS[1]).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ConfigError, match="line 2: not UTF-8"):
        _read(path)
    assert [i.prompt for i in _read(path, on_error="skip").items] == ["Q0", "Q1"]


def test_a_line_that_is_not_utf8_is_skipped_in_json_lines_and_csv_files(tmp_path):
    lines = json.dumps(ROWS[0]).encode() + b'\n{"prompt": "\xff"}\n' + json.dumps(ROWS[1]).encode() + b"\n"
    (tmp_path / "pairs.json").write_bytes(lines)
    csv = b"prompt,chosen,rejected\nQ0,yes 0,no 0\nQ\xff,y,n\nQ2,yes 2,no 2\n"
    (tmp_path / "pairs.csv").write_bytes(csv)
    for name, kept in (("pairs.json", ["Q0", "Q1"]), ("pairs.csv", ["Q0", "Q2"])):
        with pytest.raises(ConfigError, match=r"line [23]: not UTF-8"):
            _read(tmp_path / name)
        loaded = _read(tmp_path / name, on_error="skip")
        assert [i.prompt for i in loaded.items] == kept and loaded.skipped.counts == {"unreadable": 1}
    (tmp_path / "header.csv").write_bytes(b"prompt,ch\xffosen,rejected\nQ0,yes 0,no 0\n")
    with pytest.raises(ConfigError, match="line 1: not UTF-8"):  # no header, no file: refused even when skipping
        _read(tmp_path / "header.csv", on_error="skip")


def test_skips_count_by_the_sources_column_whatever_the_response(tmp_path):
    path = tmp_path / "items.jsonl"
    rows = [
        {"prompt": f"Q{i}", "responses": [{"text": "a"}, {"text": "b"}, {"text": "c", "stance": "nonsense"}]}
        for i in range(2)
    ]
    rows[1]["responses"].insert(0, rows[1]["responses"].pop())  # the bad stance first in the second row
    rows.append({"prompt": "Q2", "responses": [{"text": "a"}, {"text": "b"}]})
    path.write_text("".join(json.dumps({**r, "topic": "t1"}) + "\n" for r in rows), encoding="utf-8")
    skipped = read_items(ItemsConfig(source=str(path), on_error="skip", drop_duplicates=False), SPEC)
    assert skipped.skipped.counts == {"invalid responses.stance": 2} and len(skipped.items) == 1


def test_keep_columns_is_refused_for_the_flat_parquet_layout(tmp_path):
    import polars as pl

    from polypref.items.sources import PARQUET_COLUMNS

    path = tmp_path / "items.parquet"
    rows = [["q1", None, "Q?", f"r{i}", f"text {i}", None] for i in range(2)]
    pl.DataFrame(rows, schema=dict.fromkeys(PARQUET_COLUMNS, pl.String), orient="row").write_parquet(path)
    with pytest.raises(ConfigError, match=r"items\.keep_columns: polypref's flat Parquet layout"):
        read_items(ItemsConfig(source=str(path), keep_columns=["response_id"]), SPEC)


def test_kept_parquet_dates_and_numbers_are_published_as_their_own_text(tmp_path):
    import datetime

    import polars as pl

    path = tmp_path / "pairs.parquet"
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    pl.DataFrame({**{k: [v] for k, v in ROWS[0].items()}, "at": [when], "votes": [7]}).write_parquet(path)
    loaded = _read(path, keep_columns=["at", "votes"])
    assert loaded.kept is not None and loaded.kept.row(0)[1:] == ("2024-01-02T03:04:05", "7")
