"""items.limit and split slices: the first rows in source order, read (and, from the Hub, downloaded) alone.

A limited sample must stay the same when the source grows, as a persona sample keeps its first personas, and a
limited read must not fetch files, or row groups, past the rows it keeps. Hub sources come from the local Hub
stub (tests/hubstub), which stands in for the Hub's HTTP API; huggingface_hub and its cache are real.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items import locate
from polypref.items.sources import PARQUET_COLUMNS, read_items
from polypref.population.spec import SurveySpec
from polypref.safety import secrets
from tests.conftest import spec_dict

SPEC = SurveySpec.model_validate(spec_dict())
_names = itertools.count()


@pytest.fixture(autouse=True)
def forget_secrets():
    yield
    secrets._reset_for_tests()


def pairs(start: int, n: int) -> list[dict]:
    return [
        {"prompt": f"q{i}", "chosen": f"a longer answer {i}", "rejected": f"no {i}"} for i in range(start, start + n)
    ]


def parquet(rows: list[dict], group: int = 10) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=group)
    return sink.getvalue()


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def prompts(source: str, **settings_: object) -> list[str]:
    return [i.prompt for i in read_items(ItemsConfig(source=source, **settings_), SPEC).items]


# ---- the first rows, stable as the source grows -----------------------------------------------------------


def test_limit_takes_the_first_rows_and_keeps_them_when_the_source_grows(tmp_path: Path) -> None:
    root = write(
        tmp_path, {"data/train-00000.parquet": parquet(pairs(0, 25)), "data/train-00001.jsonl": jsonl(pairs(25, 25))}
    )
    assert prompts(str(root), limit=30) == [f"q{i}" for i in range(30)]  # across files, in file order
    assert prompts(str(root), limit=30) == prompts(str(root), limit=30, format="pairwise")
    # grown: rows appended to the last file, a shard added after it
    write(root, {"data/train-00001.jsonl": jsonl(pairs(25, 40)), "data/train-00002.parquet": parquet(pairs(65, 30))})
    assert prompts(str(root), limit=30) == [f"q{i}" for i in range(30)]
    assert prompts(str(root), limit=30) == prompts(str(root), limit=30)
    assert len(prompts(str(root), limit=1000)) == 95


def test_a_limit_that_is_not_a_whole_number_of_at_least_1_is_refused() -> None:
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValidationError) as caught:
            ItemsConfig(limit=bad)
        assert caught.value.errors()[0]["loc"] == ("limit",), bad


def test_limit_reads_nothing_after_its_rows(tmp_path: Path) -> None:
    """A bad line after the limit is never parsed, and a file after it never opened."""
    root = write(
        tmp_path,
        {
            "data/train-00000.jsonl": jsonl(pairs(0, 10)) + "not json\n",
            "data/train-00001.parquet": b"PAR1 not Parquet at all",
        },
    )
    assert prompts(str(root), limit=10) == [f"q{i}" for i in range(10)]
    with pytest.raises(ConfigError) as caught:
        prompts(str(root), limit=11)
    assert caught.value.problems[0][0] == "line 11"


def test_the_flat_layout_limit_takes_the_first_items(tmp_path: Path) -> None:
    def flat(items: range) -> bytes:
        rows = [
            {
                "item_id": f"i{k}",
                "topic": None,
                "prompt": f"q{k}",
                "response_id": None,
                "response": text,
                "stance": None,
            }
            for k in items
            for text in (f"yes {k}", f"no {k}")
        ]
        return parquet([{c: r[c] for c in PARQUET_COLUMNS} for r in rows], group=3)

    root = write(tmp_path, {"data/train-00000.parquet": flat(range(4)), "data/train-00001.parquet": flat(range(4, 8))})
    assert prompts(str(root), limit=3) == ["q0", "q1", "q2"]
    assert prompts(str(root), limit=6) == [f"q{k}" for k in range(6)]
    write(root, {"data/train-00002.parquet": b"PAR1 not Parquet at all"})  # never read: the first files suffice
    assert prompts(str(root), limit=6) == [f"q{k}" for k in range(6)]
    assert prompts(str(root), split="train[2:6]") == ["q1", "q2"]  # rows 2-5: the responses of two items


# ---- the Hub: only the files, or row groups, the rows need ---------------------------------------------------


def hub_repo(hub, files: dict) -> str:
    repo = f"limit-org/set{next(_names)}"
    hub.stub.add_commit(repo, files)
    return repo


def downloaded(hub) -> list[str]:
    return sorted(p.name for p in hub.hub_cache.rglob("*.parquet"))


def test_a_limited_hub_read_downloads_only_the_files_it_needs(hub) -> None:
    repo = hub_repo(hub, {f"data/train-0000{k}.parquet": parquet(pairs(k * 20, 20)) for k in range(4)})
    source = f"hf://datasets/{repo}"
    assert prompts(source, limit=15) == [f"q{i}" for i in range(15)]
    assert hub.stub.log.count("resolve", "GET") == 1 and downloaded(hub) == ["train-00000.parquet"]
    assert prompts(source, limit=30) == [f"q{i}" for i in range(30)]
    assert hub.stub.log.count("resolve", "GET") == 2 and downloaded(hub) == [
        "train-00000.parquet",
        "train-00001.parquet",
    ]

    hub.stub.add_commit(repo, {"data/train-00004.parquet": parquet(pairs(80, 20))})  # the source grows
    hub.stub.log.clear()
    assert prompts(source, limit=30) == [f"q{i}" for i in range(30)]
    assert hub.stub.log.count("resolve", "GET") == 0  # the same files, from the cache

    hub.stub.log.clear()
    hub.offline()
    assert prompts(source, limit=30) == [f"q{i}" for i in range(30)]
    with pytest.raises(ConfigError) as caught:  # a file no limited read downloaded
        prompts(source, limit=50)
    assert "HF_HUB_OFFLINE is set" in caught.value.problems[0][1] and "data/train-00002.parquet" in str(caught.value)
    assert hub.stub.log.count() == 0


def test_a_large_hub_parquet_file_is_read_in_place(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past RANGE_READ_MIN_BYTES, a limited read fetches the footer and the row groups it needs by range requests,
    and caches nothing."""
    from huggingface_hub.hf_file_system import HfFileSystemFile

    monkeypatch.setattr(locate, "RANGE_READ_MIN_BYTES", 0)
    fetched: list[int] = []
    original = HfFileSystemFile._fetch_range

    def counted(self: HfFileSystemFile, start: int, end: int) -> bytes:
        data = original(self, start, end)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(HfFileSystemFile, "_fetch_range", counted)
    rows = [{**p, "rejected": f"{p['rejected']} {os.urandom(1000).hex()}"} for p in pairs(0, 1000)]  # ~2 MB
    data = parquet(rows, group=20)
    repo = hub_repo(hub, {"README.md": "# one big file", "data/train-00000-of-00001.parquet": data})
    source = f"hf://datasets/{repo}"
    assert prompts(source, limit=25) == [f"q{i}" for i in range(25)]  # two row groups of 20
    assert 0 < sum(fetched) < len(data) / 5 and downloaded(hub) == []
    fetched.clear()
    assert prompts(source, split="train[-3:]") == ["q997", "q998", "q999"]  # the last row group alone
    assert 0 < sum(fetched) < len(data) / 5 and downloaded(hub) == []
    hub.offline()  # nothing was cached: offline, the error says how to get the file
    with pytest.raises(ConfigError) as caught:
        prompts(source, limit=25)
    assert "HF_HUB_OFFLINE is set" in str(caught.value) and "a run without items.limit downloads it" in str(
        caught.value
    )


def test_a_sliced_hub_split_downloads_only_the_files_it_slices(hub) -> None:
    readme = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
    readme += "  - split: test\n    path: data/test-*\n---\n"
    files = {f"data/train-0000{k}.jsonl": jsonl(pairs(k * 10, 10)) for k in range(3)}
    repo = hub_repo(hub, {"README.md": readme, **files, "data/test-00000.csv": "prompt,chosen,rejected\nt,yes,no\n"})
    assert prompts(f"hf://datasets/{repo}", split="train[12:14] + test") == ["q12", "q13", "t"]
    assert sorted(p.name for p in hub.hub_cache.rglob("*-0000*")) == [
        "test-00000.csv",
        "train-00000.jsonl",
        "train-00001.jsonl",
    ]


# ---- split expressions, as datasets reads them ------------------------------------------------------------


def test_split_expressions_select_the_rows_datasets_selects(tmp_path: Path) -> None:
    import datasets

    root = write(
        tmp_path,
        {
            "data/train-00000-of-00002.parquet": parquet(pairs(0, 30)),
            "data/train-00001-of-00002.parquet": parquet(pairs(30, 27)),
            "data/test-00000-of-00001.parquet": parquet(pairs(100, 8)),
        },
    )
    expressions = [
        "train",
        "train+test",
        "train[:10]",
        "train[10%:20%]",
        "test[-3:]",
        "train[-20%:-10%]+test[:50%]",
        "train[28:33]",
        "train[3:1]+test",
    ]
    for expression in expressions:
        theirs = datasets.load_dataset(str(root), split=expression, cache_dir=str(tmp_path / "hfds"))["prompt"]
        assert prompts(str(root), split=expression) == theirs, expression


@settings(max_examples=300, deadline=None)
@given(
    start=st.none() | st.integers(-120, 120),
    stop=st.none() | st.integers(-120, 120),
    percent=st.booleans(),
    pct1=st.booleans(),
    total=st.integers(0, 400),
)
def test_slice_bounds_are_those_of_datasets(start, stop, percent, pct1, total) -> None:
    from datasets.arrow_reader import ReadInstruction

    if start is None and stop is None:
        return
    unit = "%" if percent else ""
    rounding = "(pct1_dropremainder)" if pct1 and percent else ""
    text = f"train[{'' if start is None else f'{start}{unit}'}:{'' if stop is None else f'{stop}{unit}'}]{rounding}"
    try:
        theirs = ReadInstruction.from_spec(text).to_absolute({"train": total})[0]
    except ValueError as e:
        with pytest.raises(ConfigError):
            (term,) = locate.parse_split(text)
            term.bounds(total)
        assert str(e)
        return
    (term,) = locate.parse_split(text)
    lo, hi = term.bounds(total)
    assert (min(lo, total), total if hi is None else min(hi, total)) == (theirs.from_, theirs.to)


def test_split_expressions_are_parsed_or_refused() -> None:
    assert locate.parse_split("train") == (locate.SplitTerm("train"),)
    assert locate.parse_split("train + test[:1_000]") == (
        locate.SplitTerm("train"),
        locate.SplitTerm("test", None, 1000),
    )
    assert locate.parse_split("validation[10%:-5](closest)") == (
        locate.SplitTerm("validation", 10, -5, True, "closest"),
    )
    for bad, words in [
        ("train[:x]", "is not SPLIT"),
        ("train[:10](pct1_dropremainder)", "only for percent slices"),
        ("train[:101%]", "between -100 and 100"),
        ("train[:10%]+test[:10%](pct1_dropremainder)", "round alike"),
        ("train[_:]", "whole numbers"),
        ("train+", "is not SPLIT"),
    ]:
        with pytest.raises(ConfigError) as caught:
            locate.parse_split(bad)
        assert caught.value.problems[0][0] == "items.split" and words in caught.value.problems[0][1], bad


def test_a_slice_that_selects_nothing_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path, {"items.jsonl": jsonl(pairs(0, 5))})
    with pytest.raises(ConfigError) as caught:
        prompts(str(root / "items.jsonl"), split="train[5:]")
    assert caught.value.problems == [("items.split", f"'train[5:]' selects no rows of {root / 'items.jsonl'}")]
    assert prompts(str(root / "items.jsonl"), split="train[-2:]") == ["q3", "q4"]
