"""Pushing a build to the Hub, through huggingface_hub, to the local Hub stub (the Hub's HTTP API cannot exist
offline; tests/hubstub is named as the stub it is). Everything on our side is real: the build, the commits,
the tags, and `datasets.load_dataset` reading the pushed repo back through HF_ENDPOINT."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.hub import publish
from polypref.splits import split_of
from tests.conftest import run_polypref, run_without_prefect

pytestmark = pytest.mark.integration

TOKEN = "hf_write_token_3c8e1a9f5d"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated build with several preference shards."""
    out = tmp_path_factory.mktemp("push") / "out"
    config = load_config(None, ["population.size=30", "output.units_per_shard=1100"])
    run_without_prefect(pipeline.plan(config, out))
    return out


@pytest.fixture
def writer(hub):
    hub.stub.add_token(TOKEN, write=True)
    hub.token(TOKEN)
    return hub


def _repo() -> str:
    return f"org/prefs-{os.urandom(4).hex()}"


def _no_sleep(seconds: float) -> None:
    return None


def _remote(repo: str, config: str, revision: str) -> pl.DataFrame:
    """Every row of a pushed config, all its splits (personas split train/test by output.splits) together."""
    import datasets

    loaded = datasets.load_dataset(repo, config, revision=revision)
    return pl.concat([pl.from_arrow(loaded[split].data.table) for split in sorted(loaded)])  # type: ignore[misc]


def test_a_push_loads_back_with_datasets_and_a_second_push_commits_nothing(writer, build: Path) -> None:

    repo = _repo()
    first = publish.push(build, repo, sleep=_no_sleep)
    data = sorted(p for p in publish.published_files(build) if p != "README.md")
    assert first.tag == "v1" and sorted(first.uploaded) == sorted([*data, "README.md"])
    assert len(data) > 2  # several shards per config

    pushes = writer.stub.pushes(repo)
    assert [sorted(p["added"]) for p in pushes[-len(first.commits) :]][-1] == ["README.md"]  # the card lands last
    assert all(TOKEN not in json.dumps(p) for p in pushes)

    local = pl.read_parquet(build / "data" / "preferences").sort(["persona_id", "pair_id"])
    back = _remote(repo, "preferences", "v1").sort(["persona_id", "pair_id"])
    assert back.height == local.height
    assert back["chosen_id"].to_list() == local["chosen_id"].to_list()

    again = publish.push(build, repo, sleep=_no_sleep)
    assert again.commits == [] and again.tag is None and len(writer.stub.pushes(repo)) == len(pushes)


def test_a_pushed_build_loads_its_held_out_personas_as_the_test_split(writer, build: Path) -> None:
    import datasets

    repo = _repo()
    publish.push(build, repo, sleep=_no_sleep)
    local = pl.read_parquet(build / "data" / "preferences")
    test = datasets.load_dataset(repo, "preferences", split="test", revision="v1")
    train = datasets.load_dataset(repo, "preferences", split="train", revision="v1")
    assert test.num_rows > 0 and test.num_rows + train.num_rows == local.height
    held_out = {p for p in local["persona_id"] if split_of(p, 0.1) == "test"}
    assert set(test["persona_id"]) == held_out and not held_out & set(train["persona_id"])
    personas = datasets.load_dataset(repo, "personas", split="test", revision="v1")
    assert {split_of(p, 0.1) for p in personas["persona_id"]} == {"test"} and held_out <= set(personas["persona_id"])


def test_commits_hold_at_most_the_batch_size_and_the_card_comes_last(
    writer, build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "FILES_PER_COMMIT", 2)
    repo = _repo()
    result = publish.push(build, repo, sleep=_no_sleep)
    pushes = writer.stub.pushes(repo)[-len(result.commits) :]
    assert all(len(p["added"]) <= 2 for p in pushes)
    assert pushes[-1]["added"] == ["README.md"] and len(result.commits) == -(-(len(result.uploaded) - 1) // 2) + 1


def test_rate_limits_are_retried_and_a_failed_push_resumes_without_uploading_twice(writer, build: Path) -> None:
    repo = _repo()
    waits: list[float] = []
    writer.stub.fail_next_commits(2, status=429, retry_after=7)
    result = publish.push(build, repo, sleep=waits.append)
    assert waits[:2] == [7.0, 7.0] and result.tag == "v1"


def test_a_huge_retry_after_is_capped_and_logged_as_the_wait_taken(
    writer, build: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer.stub.fail_next_commits(1, status=429, retry_after=100000)
    waits: list[float] = []
    with caplog.at_level(logging.WARNING, logger="polypref.hub.publish"):
        publish.push(build, _repo(), sleep=waits.append)
    assert waits == [60.0] and "retrying in 60 s (the server asked for 100000 s; capped)" in caplog.text


def test_a_push_that_failed_midway_resumes_uploading_only_what_had_not_landed(
    writer, build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "FILES_PER_COMMIT", 4)
    repo = _repo()
    writer.stub.fail_next("commit", 6, status=503, after=1)  # the first commit lands, then a Hub that keeps failing
    with pytest.raises(publish.PublishError, match=r"503.*push again to resume"):
        publish.push(build, repo, sleep=_no_sleep)
    landed = {f for p in writer.stub.pushes(repo) for f in p["added"]}
    assert len(landed) == 4
    writer.stub.clear_faults()
    resumed = publish.push(build, repo, sleep=_no_sleep)
    assert set(resumed.uploaded) == set(publish.published_files(build)) - landed and resumed.tag == "v1"


def test_a_push_cut_short_before_its_tag_is_tagged_by_the_next_push(writer, build: Path) -> None:
    """A 429 storm on tag creation: the data and card are committed but untagged, so a pinned revision is
    missing. The next push makes no commit and tags the build; the one after changes nothing."""

    repo = _repo()
    writer.stub.fail_next("create_tag", 6, status=429, retry_after=1)
    with pytest.raises(publish.PublishError, match="429"):
        publish.push(build, repo, sleep=_no_sleep)
    commits = len(writer.stub.pushes(repo))
    resumed = publish.push(build, repo, sleep=_no_sleep)
    assert resumed.commits == [] and resumed.tag == "v1" and len(writer.stub.pushes(repo)) == commits
    assert "tagged v1 (the last push stopped before tagging it)" in next(publish.iter_summary(resumed))
    again = publish.push(build, repo, sleep=_no_sleep)
    assert again.tag is None and again.pinned == "v1" and writer.stub.log.count("create_tag", "POST") == 7
    assert _remote(repo, "preferences", "v1").height == pl.read_parquet(build / "data" / "preferences").height


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda out: [p.unlink() for p in sorted((out / "data" / "preferences").glob("*.parquet"))[:2]], "missing"),
        (lambda out: _flip(out / "data" / "preferences" / "train-00001.parquet"), "does not hold the bytes"),
        (lambda out: _flip(out / "data" / "judgments" / "train-00000.parquet"), "does not hold the bytes"),
        (
            lambda out: (out / "data" / "judgments" / ".tmp-0a1b-train-00002.parquet").write_bytes(b"PAR1"),
            "a temp file a killed writer left",
        ),
        (
            lambda out: (out / "data" / "preferences" / "notes.txt").write_text("mine"),
            "not a file this build wrote",
        ),
    ],
    ids=["two-shards-deleted", "preferences-byte-flipped", "judgments-byte-flipped", "temp-file", "stray-file"],
)
def test_a_damaged_build_is_refused_before_any_request_and_its_build_repairs_it(
    writer, build: Path, tmp_path: Path, damage, named: str
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    damage(copy)
    before = len(writer.stub.log.entries)
    repo = _repo()
    with pytest.raises(publish.PublishError, match=f"is not a whole build, so nothing was pushed: .*{named}") as e:
        publish.push(copy, repo, sleep=_no_sleep)
    assert "polypref build CONFIG --out" in str(e.value) and len(writer.stub.log.entries) == before

    for stray in (*copy.rglob(".tmp-*"), *copy.rglob("notes.txt")):  # not the build's to delete: the user's
        stray.unlink()
    config = load_config(None, ["population.size=30", "output.units_per_shard=1100"])  # the fixture's build
    repaired = run_without_prefect(pipeline.plan(config, copy))
    assert repaired["reused_judgments"] == repaired["judgments"]  # made again from the store: no request
    assert publish.push(copy, repo, sleep=_no_sleep).tag == "v1"
    assert _remote(repo, "preferences", "v1").height == pl.read_parquet(build / "data" / "preferences").height


def test_a_changed_build_uploads_only_what_changed_and_is_tagged_anew(writer, build: Path, tmp_path: Path) -> None:
    import shutil

    repo = _repo()
    publish.push(build, repo, sleep=_no_sleep)
    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    card = copy / "README.md"
    card.write_text(card.read_text() + "\nA note added after the build.\n")
    result = publish.push(copy, repo, sleep=_no_sleep)
    assert result.uploaded == ["README.md"] and result.tag == "v2" and len(result.commits) == 1


def test_bad_folders_and_cards_are_refused_before_any_request(writer, build: Path, tmp_path: Path) -> None:
    import shutil

    before = len(writer.stub.log.entries)
    for repo in ("bad repo id!", "no-org", "a/b/c"):
        with pytest.raises(publish.PublishError, match="is not a Hub repo id"):
            publish.push(build, repo)
    with pytest.raises(publish.PublishError, match="holds no polypref build, so nothing was pushed: build it first"):
        publish.push(tmp_path, _repo())
    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    (copy / "README.md").write_text("---\n- not: a mapping\n---\n# card\n")
    with pytest.raises(publish.PublishError, match="must be a mapping"):
        publish.push(copy, _repo())
    assert len(writer.stub.log.entries) == before


@pytest.mark.process  # huggingface_hub reads HF_ENDPOINT when it is imported
def test_the_push_command_needs_a_token_and_never_prints_it(writer, build: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": writer.url, "HF_HOME": str(writer.home), "HF_HUB_OFFLINE": "0"}
    command = ["push", str(build), "--repo", _repo()]
    env.pop("HF_TOKEN", None)
    refused = run_polypref(*command, env=env)
    assert refused.returncode == 2 and "HF_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    done = run_polypref(*command, env={**env, "HF_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert "tagged v1" in done.stdout and TOKEN not in done.stdout + done.stderr


@pytest.mark.process  # huggingface_hub reads HF_ENDPOINT when it is imported
def test_a_build_that_names_a_repo_publishes_and_a_refresh_uploads_only_its_new_files(
    writer, tiny_config: Path, tmp_path: Path
) -> None:
    """The flow's publish step (publish.repo in the config), then a scheduled refresh's --add-personas: the
    refresh's push uploads its new shards, the weights and the card, nothing else the first push sent."""

    repo = _repo()
    env = {**os.environ, "HF_ENDPOINT": writer.url, "HF_HOME": str(writer.home), "HF_HUB_OFFLINE": "0"}
    env.pop("HF_TOKEN", None)
    out = tmp_path / "out"
    command = ["build", str(tiny_config), "--out", str(out), "--no-progress"]
    command += ["--set", "population.size=20", "--set", "output.units_per_shard=100", "--set", f"publish.repo={repo}"]
    refused = run_polypref(*command, env=env)
    assert refused.returncode == 2 and "HF_TOKEN" in refused.stderr and not out.exists()  # before any work

    first = run_polypref(*command, env={**env, "HF_TOKEN": TOKEN})
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"published: {repo} (v1)" in first.stdout and TOKEN not in first.stdout + first.stderr
    sent = {f for p in writer.stub.pushes(repo) for f in p["added"]}
    assert sent == set(publish.published_files(out))

    before = dict(publish.published_files(out))
    refresh = [*command, "--add-personas", "8"]
    again = run_polypref(*refresh, env={**env, "HF_TOKEN": TOKEN})
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"published: {repo} (v2)" in again.stdout
    new = set(publish.published_files(out)) - set(before)
    # the new personas' shard: a file per config and split of its personas (output.splits)
    splits = {split_of(p, 0.1) for p in pl.read_parquet(out / "data" / "personas")["persona_id"][20:]}
    assert new == {f"data/{c}/{s}-00003.parquet" for c in ("judgments", "preferences", "personas") for s in splits}
    pushes = writer.stub.pushes(repo)
    refreshed = [p for p in pushes if p["commit"] not in {q["commit"] for q in pushes[: len(pushes) - 2]}]
    assert len(refreshed) == 2  # one commit of data files, then the card
    # and the pairs, weights, review candidates, map and distributions, which every refresh writes again over the
    # whole dataset
    rewritten = ("pairs", "weights", "review", "map", "distributions")
    whole = {f for f in publish.published_files(out) if f.startswith("data/") and f.split("/")[1] in rewritten}
    whole |= {"map.png"}
    added = {f for p in refreshed for f in p["added"]}
    assert added - whole == {*new, "README.md"} and "data/weights/train-00000.parquet" in added
    commits = [json.loads(line) for line in (writer.stub.root / "commits.jsonl").read_text().splitlines()]
    assert [c["commit"] for c in commits if c["repo"] == repo] == [p["commit"] for p in pushes]

    assert _remote(repo, "judgments", "v2").height == pl.read_parquet(out / "data" / "judgments").height == 28 * 6 * 2

    same = run_polypref(*command, env={**env, "HF_TOKEN": TOKEN})
    assert same.returncode == 0, same.stdout + same.stderr  # the grown build, run again: the same card and files
    assert f"published: {repo} (unchanged, no commit)" in same.stdout and len(writer.stub.pushes(repo)) == len(pushes)
