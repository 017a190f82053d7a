from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from polypref.errors import ConfigError
from polypref.items import load_items, make_pairs
from polypref.items.sources import PARQUET_COLUMNS
from polypref.population import load_spec
from tests.conftest import items_records


def test_demo_items_cover_every_gss_spending_topic():
    spec = load_spec("gss_spending")
    items = load_items("gss_spending", spec)
    assert {i.topic for i in items} == set(spec.attitudes.items)
    for item in items:
        assert len(item.responses) >= 3
        assert {r.stance for r in item.responses} == set(spec.attitudes.scale)  # every stance is taken
        assert len({r.text for r in item.responses}) == len(item.responses)


def test_all_pairs_and_random_pairs(tiny):
    items = load_items(str(tiny["items"]), load_spec(str(tiny["spec"])))
    every = make_pairs(items, "all")
    assert len(every) == 2 * 3
    assert len({p.id for p in every}) == len(every)
    some = make_pairs(items, "random", k=2, seed=4)
    assert len(some) == 4 and {p.id for p in some} <= {p.id for p in every}
    assert [p.id for p in make_pairs(items, "random", k=2, seed=4)] == [p.id for p in some]
    draws = {tuple(p.id for p in make_pairs(items, "random", k=1, seed=s)) for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_parquet_items_match_jsonl(tiny):
    rows = [
        {
            "item_id": r["id"],
            "topic": r["topic"],
            "prompt": r["prompt"],
            "response_id": x["id"],
            "response": x["text"],
            "stance": x["stance"],
        }
        for r in items_records()
        for x in r["responses"]
    ]
    path = tiny["dir"] / "items.parquet"
    pl.DataFrame(rows).write_parquet(path)
    spec = load_spec(str(tiny["spec"]))
    assert load_items(str(path), spec) == load_items(str(tiny["items"]), spec)


def test_topic_filter(tiny):
    spec = load_spec(str(tiny["spec"]))
    assert [i.topic for i in load_items(str(tiny["items"]), spec, ["t2"])] == ["t2"]
    with pytest.raises(ConfigError, match=r"items\.topics"):
        load_items(str(tiny["items"]), spec, ["t9"])


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r["responses"][1].update(stance="sideways"), "line 2: responses.1.stance"),
        (lambda r: r.update(topic="t9"), "line 2: topic"),
        (lambda r: r.update(responses=r["responses"][:1]), "line 2: responses"),
        (lambda r: r.pop("prompt"), "line 2: prompt"),
    ],
)
def test_bad_items_name_file_and_line(tiny, mutate, where):
    records = items_records()
    mutate(records[1])
    tiny["items"].write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ConfigError) as info:
        load_items(str(tiny["items"]), load_spec(str(tiny["spec"])))
    assert info.value.source == str(tiny["items"])
    assert info.value.problems[0][0] == where


def test_invalid_json_line(tiny):
    tiny["items"].write_text(json.dumps(items_records()[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_items(str(tiny["items"]), load_spec(str(tiny["spec"])))


# Item files are user input: each defect below once ended in a traceback or in items that were not the file's.


def _error(tiny: dict[str, Path], path: Path | None = None) -> ConfigError:
    path = path or tiny["items"]
    with pytest.raises(ConfigError) as info:
        load_items(str(path), load_spec(str(tiny["spec"])))
    assert info.value.source == str(path)
    return info.value


def _write_jsonl(path: Path, records: list[dict], newline: str = "\n") -> None:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + newline for r in records).encode())


def _rows(records: list[dict]) -> list[dict]:
    return [
        {
            "item_id": r.get("id"),
            "topic": r["topic"],
            "prompt": r["prompt"],
            "response_id": x.get("id"),
            "response": x["text"],
            "stance": x["stance"],
        }
        for r in records
        for x in r["responses"]
    ]


def _write_parquet(tiny: dict[str, Path], rows: list[dict], schema: dict | None = None) -> Path:
    path = tiny["dir"] / "items.parquet"
    pl.DataFrame(rows, schema=schema or dict.fromkeys(PARQUET_COLUMNS, pl.String)).write_parquet(path)
    return path


def test_items_file_that_is_not_utf8_names_the_line(tiny):
    records = items_records()
    records[1]["prompt"] = "Combien pour les parcs, café compris ?"
    tiny["items"].write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("latin-1"))
    assert _error(tiny).problems == [("line 2", "not UTF-8 text (byte 0xe9); save the file as UTF-8")]


@pytest.mark.parametrize("name", ["folder.jsonl", "folder.parquet"])
def test_items_path_that_is_a_folder_is_refused(tiny, name):
    """A folder named like a file is a mistake, not a Hub-layout folder: the config's items.source is blamed."""
    (tiny["dir"] / name).mkdir()
    with pytest.raises(ConfigError) as info:
        load_items(str(tiny["dir"] / name), load_spec(str(tiny["spec"])))
    assert info.value.source == "config"
    assert info.value.problems[0][0] == "items.source" and "is a folder, not a file" in info.value.problems[0][1]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\x85", "\x1c", "\x0b", "\x0c"])
def test_unicode_line_breaks_inside_json_strings_are_text(tiny, brk, newline):
    """JSON Lines ends a line at "\\n" only; str.splitlines also splits at these, inside a JSON string."""
    records = items_records()
    records[0]["prompt"] = f"Parks{brk}and{brk}more?"
    records[0]["responses"][2]["text"] = f"{brk} Spend more.\r\n"
    _write_jsonl(tiny["items"], records, newline)
    items = load_items(str(tiny["items"]), load_spec(str(tiny["spec"])))
    assert items[0].prompt == records[0]["prompt"]
    assert items[0].responses[2].text == records[0]["responses"][2]["text"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r.update(prompt=" \t\n"), "line 2: prompt"),
        (lambda r: r["responses"][0].update(text="\u2028\u3000"), "line 2: responses.0.text"),
        (lambda r: r["responses"][0].update(text=""), "line 2: responses.0.text"),
        (lambda r: r.update(id=""), "line 2: id"),
        (lambda r: r["responses"][1].update(id="  "), "line 2: responses.1.id"),
        (lambda r: r.update(prompt="\u200b"), "line 2: prompt"),  # a zero-width space shows nothing
        (lambda r: r["responses"][2].update(text="\ufeff \u2060"), "line 2: responses.2.text"),
    ],
)
def test_blank_texts_and_ids_are_refused(tiny, mutate, where):
    records = items_records()
    mutate(records[1])
    _write_jsonl(tiny["items"], records)
    error = _error(tiny)
    assert error.problems[0][0] == where and "whitespace" in error.problems[0][1]


def test_texts_are_kept_exactly(tiny):
    """Texts are data: surrounding spaces, newlines and NULs reach the judge as written."""
    records = items_records()
    records[0]["prompt"] = "  How much?\n\n"
    records[0]["responses"][0]["text"] = "\tLess.\x00 "
    _write_jsonl(tiny["items"], records)
    items = load_items(str(tiny["items"]), load_spec(str(tiny["spec"])))
    assert items[0].prompt == "  How much?\n\n" and items[0].responses[0].text == "\tLess.\x00 "


def test_identical_response_texts_are_refused(tiny):
    records = items_records()
    records[1]["responses"][2]["text"] = records[1]["responses"][0]["text"]
    _write_jsonl(tiny["items"], records)
    assert _error(tiny).problems == [("line 2: responses", "responses.0 and responses.2 have the same text")]
    path = _write_parquet(tiny, _rows(records))
    assert _error(tiny, path).problems == [("item_id 'q-t2': responses", "row 3 and row 5 have the same text")]


@pytest.mark.parametrize("column", ["topic", "prompt"])
def test_parquet_item_with_two_topics_or_prompts_is_refused(tiny, column):
    rows = _rows(items_records())
    rows[4][column] = "t1" if column == "topic" else "Something else entirely?"
    error = _error(tiny, _write_parquet(tiny, rows))
    assert error.problems == [
        (f"item_id 'q-t2': {column}", f"rows [3, 4, 5] give 2 different values; an item has one {column}")
    ]


def test_parquet_null_item_id_is_refused(tiny):
    rows = _rows(items_records())
    for row in rows[3:]:
        row["item_id"] = None
    error = _error(tiny, _write_parquet(tiny, rows))
    assert error.problems[0][0] == "item_id" and "rows [3, 4, 5]" in error.problems[0][1]


def test_null_response_ids_mean_no_id_in_jsonl_and_parquet(tiny):
    records = items_records()
    for record in records:
        for response in record["responses"]:
            response["id"] = None
    _write_jsonl(tiny["items"], records)
    spec = load_spec(str(tiny["spec"]))
    from_jsonl = load_items(str(tiny["items"]), spec)
    assert load_items(str(_write_parquet(tiny, _rows(records))), spec) == from_jsonl
    assert len({r.id for item in from_jsonl for r in item.responses}) == 6


@pytest.mark.parametrize(
    ("schema", "column"),
    [
        ({"item_id": pl.Float64}, "item_id"),
        ({"response": pl.Binary}, "response"),
        ({"stance": pl.Int64}, "stance"),
    ],
)
def test_parquet_columns_of_the_wrong_type_are_refused(tiny, schema, column):
    rows = [
        {**row, "item_id": float(i // 3), "response": row["response"].encode(), "stance": i % 3}
        for i, row in enumerate(_rows(items_records()))
    ]
    types = {**dict.fromkeys(PARQUET_COLUMNS, pl.String), **schema}
    frame = pl.DataFrame({c: [r[c] if c in schema else str(r[c]) for r in rows] for c in PARQUET_COLUMNS}, schema=types)
    path = tiny["dir"] / "items.parquet"
    frame.write_parquet(path)
    assert _error(tiny, path).problems[0][0] == column


def test_parquet_unknown_columns_are_refused(tiny):
    rows = [{**row, "responce": "typo"} for row in _rows(items_records())]
    schema = {**dict.fromkeys(PARQUET_COLUMNS, pl.String), "responce": pl.String}
    assert "unknown columns ['responce']" in _error(tiny, _write_parquet(tiny, rows, schema)).problems[0][1]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": "a", "id": "b"}', "key 'id' appears twice"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"id": ' + "1" * 5000 + "}", "cannot be read"),
    ],
)
def test_json_the_model_cannot_see_is_refused(tiny, line, reason):
    tiny["items"].write_text(json.dumps(items_records()[0]) + "\n" + line + "\n")
    error = _error(tiny)
    assert error.problems[0][0] == "line 2" and reason in error.problems[0][1]


def test_unpaired_surrogate_escape_is_refused(tiny):
    """JSON allows "\\ud800" and Python decodes it, but no UTF-8 file (the dataset) can store it; strict pydantic
    lets it through, so the loader must not."""
    records = items_records()
    tiny["items"].write_text(json.dumps(records[0]) + "\n" + json.dumps(records[1]).replace("Spending", "\\ud800", 1))
    assert _error(tiny).problems[0][0] == "line 2: responses.0.text"


def test_items_without_ids_but_the_same_prompt_are_refused(tiny):
    records = [{k: v for k, v in r.items() if k != "id"} for r in items_records()]
    _write_jsonl(tiny["items"], [*records, records[0]])
    error = _error(tiny)
    assert error.problems[0][0] == "line 1: id" and "line 3" in error.problems[0][1]


def test_duplicate_id_check_is_linear(tiny):
    """It counted with list.count per item: 20,000 items took seconds, 200,000 would take hours."""
    spec = load_spec(str(tiny["spec"]))
    small, large = tiny["dir"] / "small.jsonl", tiny["dir"] / "large.jsonl"
    record = items_records()[0]
    _write_jsonl(small, [{**record, "id": f"q{i}"} for i in range(2_000)])
    _write_jsonl(large, [{**record, "id": f"q{i}"} for i in range(20_000)])

    def seconds(path: Path) -> float:
        start = time.perf_counter()
        load_items(str(path), spec)
        return time.perf_counter() - start

    seconds(small)  # warm up
    ratio = min(seconds(large) for _ in range(2)) / min(seconds(small) for _ in range(3))
    assert ratio < 30, f"10x the items took {ratio:.0f}x the time"  # linear ~10, quadratic ~100
