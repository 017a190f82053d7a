"""Item sources: which files a source names (locate) and reading their rows (rows), locally and from the Hub stub."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polypref import assets
from polypref.errors import ConfigError
from polypref.items import rows as item_rows
from polypref.items.locate import ItemSource, SourceFile, locate_source
from polypref.items.rows import Row, source_columns
from polypref.safety import secrets

_names = itertools.count()


@pytest.fixture(autouse=True)
def forget_secrets():
    yield
    secrets._reset_for_tests()  # tokens registered by a test stay out of the next one


def read_rows(files: list[SourceFile] | tuple[SourceFile, ...]) -> list[Row]:
    """Every row of local files, in source order; a row that cannot be read is refused, as ``items.on_error:
    fail`` refuses it (the reader yields it in its place)."""
    rows = [row for f in files for row in item_rows.read_rows(f)]
    for row in rows:
        if isinstance(row.data, item_rows.Unreadable):
            raise row.data.error
    return rows


def jsonl(records: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def parquet_bytes(row_group_size: int | None = None, **columns: list) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def make_folder(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def readme(configs: str) -> str:
    return f"---\nconfigs:\n{configs}---\n# data\n"


def names(source: ItemSource, root: Path | None = None) -> list[str]:
    return [Path(f.name).relative_to(root).as_posix() if root else f.name for f in source.files]


def problem(error: pytest.ExceptionInfo[ConfigError]) -> tuple[str, str]:
    assert len(error.value.problems) == 1, error.value.problems
    return error.value.problems[0]


# ---- shipped sets and single files ----------------------------------------------------------------------


def test_shipped_item_set_by_name():
    located = locate_source("gss_spending")
    assert located.kind == "shipped"
    assert located.files == (
        SourceFile(assets.path("data", "items", "gss_spending.jsonl"), "data/items/gss_spending.jsonl"),
    )
    assert located.provenance == {
        "source": "gss_spending",
        "kind": "shipped",
        **dict.fromkeys(["repo", "revision", "requested_revision", "config", "split"]),
        "files": ["data/items/gss_spending.jsonl"],
    }
    with pytest.raises(ConfigError) as caught:
        locate_source("no_such_set")
    field, reason = problem(caught)
    assert field == "items.source" and "'ess_immigration', 'gss_spending'" in reason


def test_single_files(tmp_path):
    make_folder(
        tmp_path,
        {
            "a.jsonl": jsonl([{"x": 1}]),
            "b.parquet": parquet_bytes(x=[1]),
            "c.csv": "x\n1\n",
            "d.json": "[]",
            "e.txt": "",
        },
    )
    (tmp_path / "folder.parquet").mkdir()
    for name in ("a.jsonl", "b.parquet", "c.csv", "d.json"):
        located = locate_source(str(tmp_path / name))
        assert located.kind == "file" and located.files == (SourceFile(tmp_path / name, str(tmp_path / name)),)
    cases = [
        ((str(tmp_path / "missing.jsonl"),), {}, "items.source", "items file not found: "),
        ((str(tmp_path / "folder.parquet"),), {}, "items.source", "is a folder, not a file"),
        ((str(tmp_path / "e.txt"),), {}, "items.source", "must be a .jsonl, .parquet, .json or .csv file"),
        ((str(tmp_path / "a.jsonl"),), {"config": "x"}, "items.config", "applies to a folder or Hub dataset"),
        ((str(tmp_path / "a.jsonl"),), {"split": "test"}, "items.split", "applies to a folder or Hub dataset"),
        ((str(tmp_path / "a.jsonl"),), {"revision": "v1"}, "items.revision", "only a Hub dataset"),
        (("",), {}, "items.source", "must name"),
    ]
    for args, kwargs, field, words in cases:
        with pytest.raises(ConfigError) as caught:
            locate_source(*args, **kwargs)
        assert problem(caught)[0] == field and words in problem(caught)[1], (args, kwargs, caught.value)


# ---- folders in Hub layout ------------------------------------------------------------------------------


FOLDER = {
    "data/pairs/train-00000.parquet": parquet_bytes(a=[1, 2]),
    "data/pairs/train-00001.parquet": parquet_bytes(a=[3]),
    "data/pairs/test.jsonl": jsonl([{"a": 9}]),
    "extra/one.jsonl": jsonl([{"b": 1}]),
    "extra/two.jsonl": jsonl([{"b": 2}]),
    "notes/.hidden.jsonl": jsonl([{"c": 0}]),
}


@pytest.mark.parametrize(
    ("configs", "config", "split", "expected"),
    [
        ("- config_name: e\n  data_files: extra/*.jsonl\n", None, "train", ["extra/one.jsonl", "extra/two.jsonl"]),
        (
            "- config_name: e\n  data_files: [extra/two.jsonl, extra/one.jsonl]\n",
            "e",
            "train",
            ["extra/one.jsonl", "extra/two.jsonl"],
        ),
        (
            "- config_name: pairs\n  data_files:\n  - split: train\n    path: data/pairs/train-*\n"
            "  - split: test\n    path: [data/pairs/test.jsonl]\n- config_name: e\n  data_files: extra/one.jsonl\n"
            "  default: true\n",
            "pairs",
            "test",
            ["data/pairs/test.jsonl"],
        ),
        (
            "- config_name: pairs\n  data_files:\n  - split: train\n    path: data/pairs/train-*\n"
            "- config_name: e\n  data_files: extra/one.jsonl\n  default: true\n",
            None,
            "train",
            ["extra/one.jsonl"],
        ),
        (
            "- config_name: other\n  data_files: extra/two.jsonl\n- config_name: default\n  data_dir: data/pairs\n"
            "  data_files: {train: 'train-*.parquet', test: test.jsonl}\n",
            None,
            "train",
            ["data/pairs/train-00000.parquet", "data/pairs/train-00001.parquet"],
        ),
        ("- config_name: hidden\n  data_files: notes/.*\n", None, "train", ["notes/.hidden.jsonl"]),
    ],
    ids=["string", "list", "split-mapping", "default-true", "named-default-with-data_dir", "hidden-when-named"],
)
def test_folder_configs(tmp_path, configs, config, split, expected):
    root = make_folder(tmp_path, {**FOLDER, "README.md": readme(configs)})
    located = locate_source(str(root), config, split)
    assert located.kind == "folder" and names(located, root) == expected
    assert all(f.path == root / n for f, n in zip(located.files, expected, strict=True))
    assert located.provenance["split"] == split


def test_folder_errors_list_what_exists(tmp_path):
    two = readme("- config_name: a\n  data_files: extra/one.jsonl\n- config_name: b\n  data_files: extra/two.jsonl\n")
    root = make_folder(tmp_path / "two", {**FOLDER, "README.md": two})
    with pytest.raises(ConfigError) as caught:
        locate_source(str(root))  # several configs, none the default
    assert problem(caught)[0] == "items.config" and "['a', 'b']" in problem(caught)[1]
    with pytest.raises(ConfigError) as caught:
        locate_source(str(root), config="c")
    assert problem(caught) == ("items.config", "no config 'c'; the dataset's configs: ['a', 'b']")
    with pytest.raises(ConfigError) as caught:
        locate_source(str(root), config="a", split="test")
    assert problem(caught) == ("items.split", "no split 'test' in config 'a'; its splits: ['train']")
    plain = make_folder(tmp_path / "plain", FOLDER)
    with pytest.raises(ConfigError) as caught:
        locate_source(str(plain), config="pairs")
    assert problem(caught)[0] == "items.config" and "only 'default'" in problem(caught)[1]
    missing = make_folder(
        tmp_path / "missing", {**FOLDER, "README.md": readme("- config_name: a\n  data_files: x/*.jsonl\n")}
    )
    with pytest.raises(ConfigError) as caught:
        locate_source(str(missing))
    assert "no file matches ['x/*.jsonl']" in problem(caught)[1]
    broken = make_folder(
        tmp_path / "broken", {**FOLDER, "README.md": readme("- config_name: a\n  data_files: [x: 1\n")}
    )
    with pytest.raises(ConfigError) as caught:
        locate_source(str(broken))
    assert "README.md YAML header: YAML syntax error" in problem(caught)[1]


@pytest.mark.parametrize(
    ("files", "split", "expected", "splits"),
    [
        (
            {
                "data/train-00000-of-00002.parquet": b"",
                "data/train-00001-of-00002.parquet": b"",
                "data/dev-00000-of-00001.jsonl": "",
            },
            "train",
            ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
            ["train", "dev"],
        ),
        ({"train.jsonl": "", "test.jsonl": "", "README.md": "# no configs"}, "test", ["test.jsonl"], ["train", "test"]),
        (
            {"data/training/a.parquet": b"", "data/validation/b.jsonl": ""},
            "validation",
            ["data/validation/b.jsonl"],
            ["train", "validation"],
        ),
        ({"my-train-file.jsonl": "", "other.jsonl": ""}, "train", ["my-train-file.jsonl"], ["train"]),
        (
            {"a.jsonl": "", "sub/b.parquet": b"", "LICENSE": "", ".cache/c.jsonl": ""},
            "train",
            ["a.jsonl", "sub/b.parquet"],
            ["train"],
        ),
    ],
    ids=["sharded", "split-file-names", "split-folders", "keyword-in-name", "everything-is-train"],
)
def test_folder_default_layouts(tmp_path, files, split, expected, splits):
    root = make_folder(tmp_path, files)
    assert names(locate_source(str(root), split=split), root) == expected
    with pytest.raises(ConfigError) as caught:
        locate_source(str(root), split="nope")
    assert problem(caught)[1].endswith(f"its splits: {splits}")


def test_unsupported_file_types_are_named(tmp_path):
    txt = make_folder(tmp_path / "txt", {"data/train.txt": "a\n1\n", "data/test.txt": "a\n2\n", "README.md": "hi"})
    with pytest.raises(ConfigError) as caught:
        locate_source(str(txt))
    assert problem(caught)[0] == "items.source"
    assert (
        "only .jsonl, .parquet, .json and .csv data files can be read, found .txt (data/train.txt)"
        in problem(caught)[1]
    )
    named = readme("- config_name: default\n  data_files: [data/a.jsonl, data/b.json.gz]\n")
    mixed = make_folder(tmp_path / "mixed", {"data/a.jsonl": "", "data/b.json.gz": b"", "README.md": named})
    with pytest.raises(ConfigError) as caught:
        locate_source(str(mixed))
    assert "found .gz (data/b.json.gz)" in problem(caught)[1]


PAIRS = [{"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(4)]
CSV = "prompt,chosen,rejected\n" + "".join(f"{p['prompt']},{p['chosen']},{p['rejected']}\n" for p in PAIRS[2:])


def read_prompts(source: str, **settings: object) -> list[str]:
    from polypref.config import ItemsConfig
    from polypref.items.sources import read_items
    from polypref.population.spec import SurveySpec
    from tests.conftest import spec_dict

    spec = SurveySpec.model_validate(spec_dict())
    return [i.prompt for i in read_items(ItemsConfig(source=source, **settings), spec).items]


def test_json_and_csv_data_files_in_folders(tmp_path):
    files = {"data/train.json": json.dumps(PAIRS[:2], indent=1), "data/test.csv": CSV}
    root = make_folder(tmp_path, files)
    assert names(locate_source(str(root), split="test"), root) == ["data/test.csv"]
    assert names(locate_source(str(root)), root) == ["data/train.json"]
    assert read_prompts(str(root), split="test") == ["q2", "q3"]
    assert read_prompts(str(root)) == ["q0", "q1"]
    named = readme("- config_name: default\n  data_files: {train: data/*.csv, test: data/train.json}\n")
    make_folder(tmp_path, {"README.md": named})
    assert read_prompts(str(root), split="test + train") == ["q0", "q1", "q2", "q3"]


def test_json_and_csv_data_files_on_the_hub(hub):
    repo, _ = hub_repo(hub, {"data/train-00000-of-00001.csv": CSV, "data/test-00000-of-00001.json": json.dumps(PAIRS)})
    located = locate_source(f"hf://datasets/{repo}", split="test")
    assert names(located) == ["data/test-00000-of-00001.json"] and located.files[0].path.is_file()
    assert read_prompts(f"hf://datasets/{repo}", split="train") == ["q2", "q3"]
    assert read_prompts(f"hf://datasets/{repo}", split="test[:1]+train") == ["q0", "q2", "q3"]


def test_split_expressions_name_each_term_and_its_files(tmp_path):
    root = make_folder(tmp_path, FOLDER)
    located = locate_source(str(root), split="train[:2] + test[50%:]")
    assert [(p.term.split, p.term.start, p.term.stop, p.term.percent) for p in located.parts] == [
        ("train", None, 2, False),
        ("test", 50, None, True),
    ]
    assert [names(ItemSource("folder", p.files), root) for p in located.parts] == [
        ["data/pairs/train-00000.parquet", "data/pairs/train-00001.parquet"],
        ["data/pairs/test.jsonl"],
    ]
    assert located.provenance["split"] == "train[:2] + test[50%:]" and len(located.files) == 3
    with pytest.raises(ConfigError) as caught:
        locate_source(str(root), split="train+dev[:3]")
    assert problem(caught) == ("items.split", "no split 'dev' in config 'default'; its splits: ['train', 'test']")
    one = str(root / "extra" / "one.jsonl")
    assert locate_source(one, split="train[:1]").provenance["split"] == "train[:1]"
    with pytest.raises(ConfigError) as caught:
        locate_source(one, split="train+test[:1]")
    assert problem(caught)[0] == "items.split" and "a file is split 'train'" in problem(caught)[1]


# ---- rows --------------------------------------------------------------------------------------------------


def test_rows_in_source_order_with_nested_values(tmp_path):
    table = pa.table({"id": [1, 2], "turns": [[{"role": "user", "content": "hi"}], []], "meta": [{"k": "v"}, None]})
    pq.write_table(table, tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text('\ufeff{"id": 3}\n\n  \t\r\n{"id": 4, "deep": {"x": [1]}}\r\n')
    files = [SourceFile(tmp_path / "a.parquet", "a.parquet"), SourceFile(tmp_path / "b.jsonl", "b.jsonl")]
    rows = read_rows(files)
    assert [r.where for r in rows] == ["a.parquet row 0", "a.parquet row 1", "b.jsonl line 1", "b.jsonl line 4"]
    assert rows[0].data == {"id": 1, "turns": [{"role": "user", "content": "hi"}], "meta": {"k": "v"}}
    assert rows[3].data == {"id": 4, "deep": {"x": [1]}}
    assert source_columns(files) == ["id", "turns", "meta"]  # JSONL: the first record's keys
    assert source_columns(files[::-1]) == ["id", "turns", "meta"]


@pytest.mark.parametrize(
    ("content", "where", "words"),
    [
        ('{"a": 1}\n[1, 2]\n', "line 2", "expected a JSON object, got an array"),
        ('{"a": 1}\n\n{"a": \n', "line 3", "invalid JSON"),
        ('{"a": 1, "a": 2}\n', "line 1", "key 'a' appears twice"),
        (b'{"a": 1}\n{"a": "\xff"}\n', "line 2", "not UTF-8 text (byte 0xff)"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, content, where, words):
    path = tmp_path / "items.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as caught:
        read_rows([SourceFile(path, "items.jsonl")])
    assert caught.value.source == "items.jsonl"
    assert problem(caught)[0] == where and words in problem(caught)[1]


def test_unreadable_parquet_is_named(tmp_path):
    good = parquet_bytes(a=list(range(100)))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "cut.parquet").write_bytes(good[: len(good) // 2] + good[-8:])
    for name in ("bad.parquet", "cut.parquet"):
        with pytest.raises(ConfigError) as caught:
            read_rows([SourceFile(tmp_path / name, f"data/{name}")])
        assert caught.value.source == f"data/{name}" and "cannot read Parquet" in problem(caught)[1]
    with pytest.raises(ConfigError) as caught:
        source_columns([SourceFile(tmp_path / "missing.parquet", "missing.parquet")])
    assert "file not found" in problem(caught)[1]


# ---- Hub datasets through the stub -----------------------------------------------------------------------


HUB_README = readme(
    "- config_name: pairs\n  data_files:\n  - split: train\n    path: data/pairs/train-*.parquet\n"
    "  - split: test\n    path: data/pairs/test.jsonl\n  default: true\n"
    "- config_name: extra\n  data_files: extra/*.jsonl\n"
)


def hub_repo(hub, files: dict | None = None, **kwargs) -> tuple[str, str]:
    repo = f"items-org/set{next(_names)}"
    files = files or {
        "README.md": HUB_README,
        "data/pairs/train-00000.parquet": parquet_bytes(row_group_size=50, n=list(range(200))),
        "data/pairs/train-00001.parquet": parquet_bytes(row_group_size=50, n=list(range(200, 300))),
        "data/pairs/test.jsonl": jsonl([{"n": -1}]),
        "extra/a.jsonl": jsonl([{"n": 1000}]),
    }
    return repo, hub.stub.add_commit(repo, files, **kwargs)


def test_hub_default_config_and_split(hub):
    repo, sha = hub_repo(hub)
    located = locate_source(f"hf://datasets/{repo}")
    assert located.kind == "hub"
    assert names(located) == ["data/pairs/train-00000.parquet", "data/pairs/train-00001.parquet"]
    assert all(f.path.is_file() and hub.hub_cache in f.path.parents for f in located.files)
    assert located.provenance == {
        "source": f"hf://datasets/{repo}",
        "kind": "hub",
        "repo": repo,
        "revision": sha,
        "requested_revision": "main",
        "config": "pairs",
        "split": "train",
        "files": names(located),
    }
    assert [r.data["n"] for r in read_rows(located.files)] == list(range(300))
    assert not any(p.name == "a.jsonl" for p in hub.hub_cache.rglob("*"))  # only the files needed came down


def test_hub_configs_splits_and_revisions(hub):
    repo, first = hub_repo(hub, tags=["v1"])
    second = hub.stub.add_commit(repo, {"extra/b.jsonl": jsonl([{"n": 1001}])})
    hub.stub.create_branch(repo, "old", first)
    source = f"hf://datasets/{repo}"
    assert names(locate_source(source, "extra")) == ["extra/a.jsonl", "extra/b.jsonl"]
    assert names(locate_source(source, split="test")) == ["data/pairs/test.jsonl"]
    for revision in ("v1", "old", first):
        located = locate_source(source, "extra", revision=revision)
        assert names(located) == ["extra/a.jsonl"] and located.provenance["revision"] == first
        assert located.provenance["requested_revision"] == revision
    assert locate_source(f"{source}@v1", "extra").provenance["revision"] == first
    assert locate_source(f"{source}@v1", "extra", revision="v1").provenance["revision"] == first
    assert locate_source(source, "extra").provenance["revision"] == second
    with pytest.raises(ConfigError) as caught:
        locate_source(f"{source}@v1", revision="main")
    assert problem(caught)[0] == "items.revision"


def test_hub_unknown_repo_revision_config_split(hub):
    repo, _ = hub_repo(hub, tags=["v1"])
    cases = [
        (("hf://datasets/items-org/never-made",), {}, "items.source", "not found on"),
        ((f"hf://datasets/{repo}",), {"revision": "v9"}, "items.revision", "revision 'v9' not found"),
        ((f"hf://datasets/{repo}",), {"config": "nope"}, "items.config", "configs: ['pairs', 'extra']"),
        ((f"hf://datasets/{repo}",), {"split": "nope"}, "items.split", "its splits: ['train', 'test']"),
        (("hf://items-org/a-model",), {}, "items.source", "only dataset repos"),
        ((f"hf://datasets/{repo}/data/pairs/test.jsonl",), {}, "items.source", "items.config and items.split"),
        (("hf://datasets/only-one-part",), {}, "items.source", ""),
    ]
    for args, kwargs, field, words in cases:
        with pytest.raises(ConfigError) as caught:
            locate_source(*args, **kwargs)
        assert problem(caught)[0] == field and words in problem(caught)[1], (args, caught.value)
    with pytest.raises(ConfigError) as caught:
        locate_source(f"hf://datasets/{repo}", revision="v9")
    assert "(branches: ['main']; tags: ['v1'])" in problem(caught)[1]


def test_hub_unsupported_file_types(hub):
    repo, _ = hub_repo(hub, {"data/train-00000-of-00001.tsv": "a\n1\n", "data/train-00000-of-00001.txt": "{}"})
    with pytest.raises(ConfigError) as caught:
        locate_source(f"hf://datasets/{repo}")
    assert "found .tsv, .txt" in problem(caught)[1]


TOKEN = "hf_stubSecretTokenForGating123"


def test_hub_gated_and_private_datasets_need_hf_token(hub):
    gated, _ = hub_repo(hub)
    hub.stub.set_gated(gated, token=TOKEN)
    private, _ = hub_repo(hub)
    hub.stub.set_private(private, token=TOKEN)
    hub.stub.add_token("hf_validButNeverGranted456")
    messages = []

    def refused(source: str, words: str) -> None:
        with pytest.raises(ConfigError) as caught:
            locate_source(source)
        assert problem(caught)[0] == "items.source" and words in problem(caught)[1], caught.value
        messages.append(str(caught.value))

    refused(f"hf://datasets/{gated}", "is gated: set HF_TOKEN")
    refused(f"hf://datasets/{private}", "if it is private, set HF_TOKEN")
    hub.token("hf_validButNeverGranted456")
    refused(f"hf://datasets/{gated}", "has not been granted access")
    refused(f"hf://datasets/{private}", "or HF_TOKEN cannot read it")
    hub.token("hf_madeUpTokenTheHubRefuses789")
    refused(f"hf://datasets/{gated}", "refused the token in HF_TOKEN")
    hub.token(TOKEN)
    for repo in (gated, private):
        located = locate_source(f"hf://datasets/{repo}")
        assert len(read_rows(located.files)) == 300
        assert TOKEN not in json.dumps(located.provenance)
    hub.token(None)
    assert secrets.scrub(f"echo {TOKEN}") == f"echo {secrets.MASK}"  # registered: scrubbed wherever printed
    assert messages and not any(t in m for m in messages for t in (TOKEN, "hf_validButNeverGranted456", "hf_madeUp"))


def test_hub_offline_reads_the_cache_without_requests(hub):
    repo, sha = hub_repo(hub, tags=["v1"])
    source = f"hf://datasets/{repo}"
    online = locate_source(source)
    locate_source(source, "extra", revision="v1")
    assert hub.stub.log.count() > 0
    hub.stub.log.clear()
    hub.offline()
    offline = locate_source(source)
    assert offline.files == online.files and offline.provenance == online.provenance
    assert [r.data["n"] for r in read_rows(offline.files)] == [r.data["n"] for r in read_rows(online.files)]
    assert names(locate_source(source, "extra", revision="v1")) == ["extra/a.jsonl"]
    assert locate_source(source, revision=sha).provenance["revision"] == sha
    assert hub.stub.log.count() == 0  # not one request
    with pytest.raises(ConfigError) as caught:  # a split never downloaded
        locate_source(source, split="test")
    assert "HF_HUB_OFFLINE is set" in problem(caught)[1] and "run once without HF_HUB_OFFLINE" in problem(caught)[1]
    assert hub.stub.log.count() == 0


def test_hub_offline_with_nothing_cached_fails_clearly(hub):
    repo, _ = hub_repo(hub)
    hub.offline()
    with pytest.raises(ConfigError) as caught:
        locate_source(f"hf://datasets/{repo}")
    field, reason = problem(caught)
    assert field == "items.source"
    assert reason.startswith(
        "HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests and reads only its cache"
    )
    assert f"does not hold {repo}" in reason and str(hub.hub_cache) in reason
    assert hub.stub.log.count() == 0


def test_hub_network_failure(hub):
    from tests.hubstub import bind
    from tests.hubstub.fixtures import patch_hub_env

    repo, _ = hub_repo(hub)
    closed = bind()
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    patch_hub_env(hub.monkeypatch, f"http://127.0.0.1:{port}", hub.home)
    with pytest.raises(ConfigError) as caught:
        locate_source(f"hf://datasets/{repo}")
    field, reason = problem(caught)
    assert field == "items.source" and reason.startswith(f"cannot reach http://127.0.0.1:{port} (ConnectError")
    assert "set HF_HUB_OFFLINE=1" in reason
