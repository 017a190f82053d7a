from __future__ import annotations

import json

import polars as pl
import pytest

from polypref.errors import ConfigError
from polypref.items import load_items, make_pairs
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
