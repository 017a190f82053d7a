"""The Hub stub run on its own (``python -m tests.hubstub``), as README says: tokens given on its command line let
huggingface_hub push to it, and a read-only one is refused writes, with no tokens.json written by hand."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.hubstub.fixtures import patch_hub_env

REPO = Path(__file__).resolve().parents[3]
WRITER, READER = "hf_cli_writer", "hf_cli_reader"
TOKEN_ARGS = ["--token", WRITER, "--token", "hf_cli_second", "--read-only-token", READER]


pytestmark = pytest.mark.process  # the stub as its own process, as a developer runs it


@pytest.fixture
def standalone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stub in its own process on an empty root, huggingface_hub pointed at it (online); yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hubstub", "--root", str(tmp_path / "root"), "--port", "0", *TOKEN_ARGS],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        deadline = time.monotonic() + 20  # the URL is printed once the socket listens; uvicorn starts after
        while True:
            try:
                httpx2.get(f"{url}/_stub/requests")
                break
            except httpx2.ConnectError:
                assert time.monotonic() < deadline, "stub never answered"
                time.sleep(0.05)
        patch_hub_env(monkeypatch, url, tmp_path / "hf-home")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_token_given_on_the_command_line_can_push(standalone: str, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    folder = tmp_path / "tiny"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("# tiny\n")
    (folder / "data" / "rows.jsonl").write_text('{"a": 1}\n')
    api = HfApi(endpoint=standalone, token=WRITER)
    repo = "cli-org/tiny"
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=folder / "README.md", path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    commit = api.create_commit(
        repo,
        [CommitOperationAdd("data/rows.jsonl", folder / "data" / "rows.jsonl")],
        commit_message="rows",
        repo_type="dataset",
    )
    files = sorted(api.list_repo_files(repo, repo_type="dataset"))
    assert files[-2:] == ["README.md", "data/rows.jsonl"]
    got = hf_hub_download(repo, "data/rows.jsonl", repo_type="dataset", revision=commit.oid, cache_dir=tmp_path / "c")
    assert Path(got).read_text() == '{"a": 1}\n'
    HfApi(endpoint=standalone, token="hf_cli_second").create_tag(repo, tag="v1", repo_type="dataset")  # repeatable


def test_a_read_only_token_is_refused_writes(standalone: str, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    HfApi(endpoint=standalone, token=WRITER).create_repo("cli-org/ro", repo_type="dataset")
    reader = HfApi(endpoint=standalone, token=READER)
    assert reader.repo_info("cli-org/ro", repo_type="dataset").id == "cli-org/ro"  # a valid token: it reads
    with pytest.raises(HfHubHTTPError) as refused:
        reader.create_commit(
            "cli-org/ro", [CommitOperationAdd("a.txt", b"a")], commit_message="no", repo_type="dataset"
        )
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as refused:
        reader.create_repo("cli-org/other", repo_type="dataset")
    assert refused.value.response.status_code == 403
