"""The Hub stub's write routes: huggingface_hub 2.4 creates repos, commits (inline, "regular" uploads), tags and
branches against it as against the Hub, with hf_xet installed or disabled; every commit lands in commits.jsonl."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# huggingface_hub is imported inside the tests: it reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import.

_names = itertools.count()
README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# Pushed through the stub
"""


def git_oid(data: bytes) -> str:
    """The `oid` the tree listing gives a file: git's blob id of its bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def new_repo_id() -> str:
    return f"push-org/repo{next(_names)}"


def writer(hub, *, write: bool = True):
    from huggingface_hub import HfApi

    token = f"hf_writer_{next(_names)}"
    hub.stub.add_token(token, write=write)
    return HfApi(endpoint=hub.url, token=token), token


def make_folder(root: Path, rows: list[dict], shards: int = 2) -> Path:
    (root / "data").mkdir(parents=True)
    step = -(-len(rows) // shards)
    for i in range(shards):
        pq.write_table(pa.Table.from_pylist(rows[i * step : (i + 1) * step]), root / f"data/train-{i:05d}.parquet")
    (root / "README.md").write_text(README)
    (root / "notes.txt").write_text("not pushed")
    return root


ROWS = [{"id": f"r{i}", "score": i / 10, "tags": [f"t{i}"] * (i % 3)} for i in range(10)]


@pytest.mark.parametrize("xet_disabled", [False, True], ids=["xet-installed", "xet-disabled"])
def test_upload_folder_then_read_back_with_hub_and_datasets(hub, tmp_path, monkeypatch, xet_disabled):
    import datasets
    from huggingface_hub import constants, hf_hub_download

    from tests.hubstub.fixtures import patch_hub_env

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", xet_disabled)
    patch_hub_env(hub.monkeypatch, hub.url, hub.home)  # datasets.config is imported now: point it at the stub
    api, _ = writer(hub)
    repo = new_repo_id()
    url = api.create_repo(repo, repo_type="dataset", exist_ok=True)
    assert url == f"{hub.url}/datasets/{repo}" and url.repo_id == repo
    assert api.create_repo(repo, repo_type="dataset", exist_ok=True) == url  # 409 + exist_ok
    folder = make_folder(tmp_path / "out", ROWS)
    info = api.upload_folder(
        repo_id=repo,
        repo_type="dataset",
        folder_path=folder,
        allow_patterns=["data/*.parquet", "README.md"],
        commit_message="run 1",
    )
    assert api.dataset_info(repo).sha == info.oid
    assert info.commit_url == f"{hub.url}/datasets/{repo}/commit/{info.oid}"

    # the listing gives each file's git blob id and size, so a pusher can tell which local files differ
    tree = {f.path: f for f in api.list_repo_tree(repo, repo_type="dataset", recursive=True) if hasattr(f, "size")}
    assert sorted(tree) == [".gitattributes", "README.md", "data/train-00000.parquet", "data/train-00001.parquet"]
    for path in ("README.md", "data/train-00000.parquet", "data/train-00001.parquet"):
        data = (folder / path).read_bytes()
        assert (tree[path].blob_id, tree[path].size) == (git_oid(data), len(data))

    local = hf_hub_download(repo, "data/train-00001.parquet", repo_type="dataset")
    assert Path(local).read_bytes() == (folder / "data/train-00001.parquet").read_bytes()
    loaded = datasets.load_dataset(repo, split="train", cache_dir=str(hub.datasets_cache))
    assert loaded.to_list() == ROWS

    # re-uploading unchanged files commits nothing (preupload answers each file's remote oid)
    before = len(hub.stub.pushes(repo))
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=folder, allow_patterns=["data/*.parquet"])
    assert len(hub.stub.pushes(repo)) == before == 1
    (push,) = hub.stub.pushes(repo)
    assert push["added"] == ["README.md", "data/train-00000.parquet", "data/train-00001.parquet"]
    assert (push["revision"], push["commit"], push["message"], push["deleted"]) == ("main", info.oid, "run 1", [])


def test_create_commit_tags_deletes_and_commits_jsonl(hub, tmp_path):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_download

    api, _ = writer(hub)
    repo = new_repo_id()
    api.create_repo(repo, repo_type="dataset")
    shard = tmp_path / "shard.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS[:3]), shard)
    first = api.create_commit(
        repo,
        repo_type="dataset",
        commit_message="add shard",
        commit_description="three rows",
        operations=[
            CommitOperationAdd("data/train-00000.parquet", shard),
            CommitOperationAdd("README.md", README.encode()),
            CommitOperationAdd("tmp/scratch.txt", b"scratch"),
        ],
    )
    api.create_tag(repo, tag="v1", revision=first.oid, repo_type="dataset")
    second = api.create_commit(
        repo,
        repo_type="dataset",
        commit_message="replace shard",
        parent_commit=first.oid,
        operations=[
            CommitOperationDelete("data/train-00000.parquet"),
            CommitOperationDelete("tmp/"),  # a folder
            CommitOperationAdd("data/train-00001.parquet", b"not really parquet"),
        ],
    )
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert {r.name: r.target_commit for r in refs.branches} == {"main": second.oid}
    assert {r.name: r.target_commit for r in refs.tags} == {"v1": first.oid}
    assert sorted(api.list_repo_files(repo, repo_type="dataset")) == [
        ".gitattributes",
        "README.md",
        "data/train-00001.parquet",
    ]
    at_tag = hf_hub_download(repo, "data/train-00000.parquet", repo_type="dataset", revision="v1")
    assert Path(at_tag).read_bytes() == shard.read_bytes()
    commits = api.list_repo_commits(repo, repo_type="dataset")
    assert [c.title for c in commits] == ["replace shard", "add shard", "initial commit"]
    assert commits[1].message == "three rows"

    lines = [json.loads(line) for line in (hub.stub.root / "commits.jsonl").read_text().splitlines()]
    mine = [line for line in lines if line["repo"] == repo]
    assert mine == hub.stub.pushes(repo)
    assert [(m["commit"], m["parent"]) for m in mine] == [(first.oid, commits[2].commit_id), (second.oid, first.oid)]
    assert mine[0]["added"] == ["README.md", "data/train-00000.parquet", "tmp/scratch.txt"]
    assert mine[0]["message"] == "add shard\n\nthree rows"
    assert mine[1]["added"] == ["data/train-00001.parquet"]
    assert mine[1]["deleted"] == ["data/train-00000.parquet", "tmp/scratch.txt"]

    # a stale parent, a missing file to delete, a missing branch and an existing tag are refused as on the Hub
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError

    add = [CommitOperationAdd("x.txt", b"x")]
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_commit(repo, repo_type="dataset", commit_message="m", operations=add, parent_commit=first.oid)
    assert caught.value.response.status_code == 412
    with pytest.raises(EntryNotFoundError):
        api.create_commit(repo, repo_type="dataset", commit_message="m", operations=[CommitOperationDelete("nope")])
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(repo, repo_type="dataset", commit_message="m", operations=add, revision="dev")
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_tag(repo, tag="v1", repo_type="dataset")
    assert caught.value.response.status_code == 409
    assert len(hub.stub.pushes(repo)) == 2

    # branches: create one, commit to it, main is untouched
    api.create_branch(repo, branch="dev", revision="v1", repo_type="dataset")
    on_dev = api.create_commit(repo, repo_type="dataset", commit_message="m", operations=add, revision="dev")
    assert api.dataset_info(repo, revision="dev").sha == on_dev.oid
    assert api.dataset_info(repo).sha == second.oid
    assert hub.stub.pushes(repo)[-1]["revision"] == "dev"


def test_private_repo_and_unauthorised_writes(hub):
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api, _ = writer(hub)
    repo = new_repo_id()
    api.create_repo(repo, repo_type="dataset", private=True)
    assert api.dataset_info(repo).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).dataset_info(repo)
    public = new_repo_id()
    api.create_repo(public, repo_type="dataset")

    ops = [CommitOperationAdd("x.txt", b"x")]
    anonymous = HfApi(endpoint=hub.url, token=False)
    for call in (
        lambda: anonymous.create_repo(new_repo_id(), repo_type="dataset"),
        lambda: anonymous.create_commit(public, repo_type="dataset", commit_message="m", operations=ops),
        lambda: anonymous.create_tag(public, tag="t", repo_type="dataset"),
        lambda: HfApi(endpoint=hub.url, token="hf_unknown").create_commit(
            public, repo_type="dataset", commit_message="m", operations=ops
        ),
    ):
        with pytest.raises(HfHubHTTPError) as caught:
            call()
        assert caught.value.response.status_code == 401
    read_only, _ = writer(hub, write=False)
    with pytest.raises(HfHubHTTPError) as caught:
        read_only.create_commit(public, repo_type="dataset", commit_message="m", operations=ops)
    assert caught.value.response.status_code == 403
    other, _ = writer(hub)  # a valid writer that was not granted the private repo: it does not exist for it
    with pytest.raises(RepositoryNotFoundError):
        other.create_commit(repo, repo_type="dataset", commit_message="m", operations=ops)
    assert hub.stub.pushes(repo) == hub.stub.pushes(public) == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_commit_failures(hub, status):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    api, _ = writer(hub)
    repo = new_repo_id()
    api.create_repo(repo, repo_type="dataset")
    hub.stub.fail_next_commits(2, status=status, retry_after=7)
    for _ in range(2):  # create_commit does not retry its commit POST
        with pytest.raises(HfHubHTTPError) as caught:
            api.create_commit(repo, repo_type="dataset", commit_message="m", operations=[CommitOperationAdd("a", b"a")])
        assert caught.value.response.status_code == status
        assert caught.value.response.headers["Retry-After"] == "7"
    ok = api.create_commit(repo, repo_type="dataset", commit_message="m", operations=[CommitOperationAdd("a", b"a")])
    assert [p["commit"] for p in hub.stub.pushes(repo)] == [ok.oid]
    statuses = [s for m, r, _, s in hub.stub.log.entries if r == "commit"]
    assert statuses == [status, status, 200]


def test_upload_folder_with_xet_retries_an_injected_failure(hub, tmp_path, monkeypatch):
    """With hf_xet installed, upload_folder's pipeline retries the commit POST (http_backoff) on 429/5xx."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    api, _ = writer(hub)
    repo = new_repo_id()
    api.create_repo(repo, repo_type="dataset")
    hub.stub.fail_next_commits(1, status=503, retry_after=0)
    info = api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=make_folder(tmp_path / "f", ROWS))
    assert [p["commit"] for p in hub.stub.pushes(repo)] == [info.oid]
    assert [s for m, r, _, s in hub.stub.log.entries if r == "commit"] == [503, 200]


def test_dataset_card_push_validates_yaml(hub):
    from huggingface_hub import DatasetCard

    api, token = writer(hub)
    repo = new_repo_id()
    api.create_repo(repo, repo_type="dataset")
    DatasetCard(README).push_to_hub(repo, token=token)
    assert hub.stub.log.count("validate_yaml", "POST") >= 1
    assert hub.stub.pushes(repo)[0]["added"] == ["README.md"]
    assert api.dataset_info(repo).card_data["configs"][0]["config_name"] == "default"
