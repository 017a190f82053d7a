"""The Hub stub (tests/hubstub) answers huggingface_hub 2.4 and datasets 5.2 as the Hub does, for reading."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hubstub import HubStub

# huggingface_hub is imported inside the tests, never at collection: it reads HF_HUB_OFFLINE and HF_ENDPOINT once,
# at import, and the session's environment (tests/conftest.py) is set only after collection.

_names = itertools.count()

README = """---
configs:
- config_name: pairs
  data_files:
  - split: train
    path: data/pairs/train-*.parquet
  - split: test
    path: data/pairs/test-*.parquet
  default: true
- config_name: extra
  data_files: extra/*.parquet
---
# A stub dataset
"""


def parquet_bytes(**columns: list) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def new_repo(stub: HubStub, files: dict | None = None, **kwargs) -> tuple[str, str]:
    """A fresh repo (names are never reused in a session); returns (repo id, commit sha)."""
    repo = f"stub-org/repo{next(_names)}"
    files = files or {
        "README.md": README,
        "data/pairs/train-00000.parquet": parquet_bytes(a=[1, 2, 3]),
        "data/pairs/test-00000.parquet": parquet_bytes(a=[7]),
        "extra/x.parquet": parquet_bytes(b=["x"]),
    }
    return repo, stub.add_commit(repo, files, **kwargs)


def test_repo_info_by_branch_tag_and_sha(hub):
    from huggingface_hub import HfApi

    repo, first = new_repo(hub.stub, tags=["v1"])
    second = hub.stub.add_commit(repo, {"notes.txt": "more"}, message="second\n\nwith a body")
    api = HfApi()
    info = api.dataset_info(repo)
    assert info.sha == second and info.id == repo
    assert sorted(s.rfilename for s in info.siblings) == sorted(
        ["README.md", "data/pairs/train-00000.parquet", "data/pairs/test-00000.parquet", "extra/x.parquet", "notes.txt"]
    )
    assert info.card_data["configs"][0]["config_name"] == "pairs"
    assert api.dataset_info(repo, revision="v1").sha == first
    assert api.dataset_info(repo, revision=first).sha == first
    assert api.dataset_info(repo, revision="refs/tags/v1").sha == first
    assert "notes.txt" not in api.list_repo_files(repo, repo_type="dataset", revision="v1")  # snapshots never change
    detailed = {s.rfilename: s for s in api.dataset_info(repo, files_metadata=True).siblings}
    assert detailed["notes.txt"].size == 4 and detailed["notes.txt"].lfs is None
    assert detailed["notes.txt"].blob_id == hashlib.sha1(b"blob 4\0more").hexdigest()  # git's blob id
    data = hub.stub.store.blob(repo, detailed["extra/x.parquet"].lfs.sha256).read_bytes()
    assert detailed["extra/x.parquet"].lfs.sha256 == hashlib.sha256(data).hexdigest()
    commits = api.list_repo_commits(repo, repo_type="dataset")
    assert [c.commit_id for c in commits] == [second, first] and commits[0].title == "second"
    refs = api.list_repo_refs(repo, repo_type="dataset")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", second)]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first)]


def test_tree_listing_pages_and_paths_info(hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RemoteEntryNotFoundError

    repo, _ = new_repo(hub.stub)
    api = HfApi()
    hub.stub.page_size = 2
    entries = list(api.list_repo_tree(repo, repo_type="dataset", recursive=True))
    assert hub.stub.log.count("tree") == 4  # 7 entries, 2 a page
    assert sorted(e.path for e in entries) == [
        "README.md",
        "data",
        "data/pairs",
        "data/pairs/test-00000.parquet",
        "data/pairs/train-00000.parquet",
        "extra",
        "extra/x.parquet",
    ]
    top = list(api.list_repo_tree(repo, repo_type="dataset", path_in_repo="data/pairs"))
    assert sorted(e.path for e in top) == ["data/pairs/test-00000.parquet", "data/pairs/train-00000.parquet"]
    expanded = list(api.list_repo_tree(repo, repo_type="dataset", path_in_repo="extra", expand=True))
    assert expanded[0].last_commit is not None
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(repo, repo_type="dataset", path_in_repo="nowhere"))
    infos = api.get_paths_info(repo, ["README.md", "data", "missing.txt"], repo_type="dataset")
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "README.md"), ("RepoFolder", "data")]


def test_download_caches_by_etag_and_commit(hub):
    from huggingface_hub import hf_hub_download

    repo, sha = new_repo(hub.stub)
    path = hf_hub_download(repo, "extra/x.parquet", repo_type="dataset")
    assert pq.read_table(path).column("b").to_pylist() == ["x"]
    assert f"snapshots/{sha}/extra/x.parquet" in Path(path).as_posix()
    blob = Path(path).resolve().name  # blobs are named by ETag: sha256 for LFS files, git blob id otherwise
    assert blob == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert hub.stub.log.counts() == {"HEAD resolve": 1, "GET resolve": 1}
    hf_hub_download(repo, "extra/x.parquet", repo_type="dataset")  # a branch: asks for the commit again
    assert hub.stub.log.counts() == {"HEAD resolve": 2, "GET resolve": 1}
    hf_hub_download(repo, "extra/x.parquet", repo_type="dataset", revision=sha)  # a sha: no request at all
    assert hub.stub.log.count() == 3
    readme = hf_hub_download(repo, "README.md", repo_type="dataset")
    assert Path(readme).resolve().name == hashlib.sha1(f"blob {len(README)}\0{README}".encode()).hexdigest()


def test_snapshot_download_with_patterns_and_revisions(hub):
    from huggingface_hub import snapshot_download

    repo, first = new_repo(hub.stub, tags=["v1"])
    hub.stub.add_commit(repo, {"extra/x.parquet": None, "extra/y.parquet": parquet_bytes(b=["y"])})
    old = Path(snapshot_download(repo, repo_type="dataset", revision="v1", allow_patterns=["extra/*"]))
    assert old.name == first and [p.name for p in (old / "extra").iterdir()] == ["x.parquet"]
    new = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=["extra/*"]))
    assert [p.name for p in (new / "extra").iterdir()] == ["y.parquet"]
    assert not (new / "README.md").exists()


def test_range_requests_and_hffilesystem(hub):
    from huggingface_hub import HfFileSystem

    content = bytes(range(256)) * 40
    repo, sha = new_repo(hub.stub, {"blob.bin": content, "data/a.jsonl": '{"x": 1}\n'})
    url = f"{hub.url}/datasets/{repo}/resolve/main/blob.bin"
    response = httpx2.get(url, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206 and response.content == content[100:200]
    assert response.headers["X-Repo-Commit"] == sha
    assert response.headers["X-Linked-Size"] == str(len(content))  # .bin is an LFS file on the Hub
    head = httpx2.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(content)) and not head.content
    fs = HfFileSystem()
    assert fs.ls(f"datasets/{repo}/data", detail=False) == [f"datasets/{repo}/data/a.jsonl"]
    assert fs.glob(f"datasets/{repo}/**/*.jsonl") == [f"datasets/{repo}/data/a.jsonl"]
    with fs.open(f"datasets/{repo}/blob.bin", "rb") as f:
        f.seek(5000)
        assert f.read(10) == content[5000:5010]
    assert fs.read_text(f"datasets/{repo}@{sha}/data/a.jsonl") == '{"x": 1}\n'


def test_errors_are_the_hubs(hub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    repo, _ = new_repo(hub.stub)
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("stub-org/never-made")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo, revision="no-such-branch")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo, "missing.txt", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):  # model repos of the same name do not exist
        api.model_info(repo)


def test_gated_and_private_repos(hub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    gated, _ = new_repo(hub.stub)
    hub.stub.set_gated(gated, token="hf_granted_gated")
    hub.stub.add_token("hf_valid_but_not_granted")
    api = HfApi()
    assert api.dataset_info(gated).gated == "auto"  # metadata stays public
    assert "README.md" in api.list_repo_files(gated, repo_type="dataset")
    for token, status in ((None, 401), ("hf_valid_but_not_granted", 403)):
        with pytest.raises(GatedRepoError) as caught:
            hf_hub_download(gated, "README.md", repo_type="dataset", token=token, cache_dir=hub.home / str(status))
        assert caught.value.response.status_code == status
    hub.token("hf_granted_gated")  # huggingface_hub reads HF_TOKEN at call time
    assert Path(hf_hub_download(gated, "README.md", repo_type="dataset")).read_text() == README
    with pytest.raises(HfHubHTTPError) as caught:
        api.dataset_info(gated, token="hf_made_up")
    assert caught.value.response.status_code == 401 and not isinstance(caught.value, RepositoryNotFoundError)

    private, _ = new_repo(hub.stub)
    hub.stub.set_private(private, token="hf_granted_private")
    for token in ("hf_granted_gated", False):  # a valid token without access, and none at all
        with pytest.raises(RepositoryNotFoundError) as caught:
            api.dataset_info(private, token=token)
        assert not isinstance(caught.value, GatedRepoError)
    assert api.dataset_info(private, token="hf_granted_private").private is True


def test_datasets_load_dataset_reads_configs_splits_and_revisions(hub):
    import datasets

    from tests.hubstub.fixtures import patch_hub_env

    patch_hub_env(hub.monkeypatch, hub.url, hub.home)  # datasets.config exists now: point it at the stub too
    repo, first = new_repo(hub.stub, tags=["v1"])
    hub.stub.add_commit(repo, {"data/pairs/train-00001.parquet": parquet_bytes(a=[4])})
    cache = str(hub.datasets_cache)
    assert datasets.load_dataset(repo, split="train", cache_dir=cache)["a"] == [1, 2, 3, 4]
    assert datasets.load_dataset(repo, "pairs", split="test", cache_dir=cache)["a"] == [7]
    assert datasets.load_dataset(repo, "extra", split="train", cache_dir=cache)["b"] == ["x"]
    assert datasets.load_dataset(repo, split="train", revision="v1", cache_dir=cache)["a"] == [1, 2, 3]
    assert datasets.load_dataset(repo, split="train", revision=first, cache_dir=cache)["a"] == [1, 2, 3]
    plain, _ = new_repo(
        hub.stub,
        {
            "data/train-00000-of-00001.parquet": parquet_bytes(a=[1, 2]),
            "data/test-00000-of-00001.parquet": parquet_bytes(a=[3]),
        },
    )
    loaded = datasets.load_dataset(plain, cache_dir=cache)
    assert {split: len(d) for split, d in loaded.items()} == {"train": 2, "test": 1}
    assert hub.stub.log.count("unknown") == 0  # every request datasets made has a route


@pytest.mark.process
def test_standalone_server_serves_a_root(tmp_path):
    HubStub(tmp_path).add_commit("cli-org/data", {"a.txt": "hello"})
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hubstub", "--root", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx2.get(f"{url}/datasets/cli-org/data/resolve/main/a.txt")
                break
            except httpx2.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.text == "hello" and len(response.headers["X-Repo-Commit"]) == 40
        assert json.loads(httpx2.get(f"{url}/_stub/requests").text) == {"GET resolve": 1, "bytes": len(b"hello")}
        ranged = httpx2.get(f"{url}/datasets/cli-org/data/resolve/main/a.txt", headers={"Range": "bytes=1-2"})
        assert ranged.status_code == 206 and ranged.text == "el"
        assert json.loads(httpx2.get(f"{url}/_stub/requests").text)["bytes"] == len(b"hello") + 2  # as served
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_files_content_ids_stream_and_match_git_and_lfs(tmp_path):
    from polypref.hub.publish import content_ids

    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 9000  # larger than the chunk below: hashed across reads
    path.write_bytes(data)
    blob, sha = content_ids(path, chunk=4096)
    assert blob == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id
    assert sha == hashlib.sha256(data).hexdigest()  # LFS's oid
