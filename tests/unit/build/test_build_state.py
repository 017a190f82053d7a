"""The output folder as a build leaves it: resume, leftovers, damaged state, unwritable folders, a full disk,
units that never got an answer, and which config changes rebuild the dataset."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.build.documents import Summary
from polypref.build.state import BuildState
from polypref.build.state_file import StateFile
from polypref.config import load_config
from polypref.errors import OutputError
from polypref.judges import make_judge
from polypref.judges.base import NO_ANSWER
from tests.conftest import persona_free_units, run_cli, run_without_prefect
from tests.judges import WrapperJudge
from tests.unit.pipeline.test_pipeline import build, read


def test_unanswered_units_are_counted_and_exactly_they_are_asked_again(tiny_config, tmp_path):
    out = tmp_path / "out"
    config = load_config(tiny_config)
    plan = pipeline.plan(config, out)
    every = [plan.batch(s).unit(i).key for s in range(plan.num_shards) for i in range(len(plan.batch(s)))]
    failing = set(every[5:40]) | {every[-1]}
    outage = WrapperJudge(make_judge(config.judge, config.seed), micro=None, failing=failing)
    first = run_without_prefect(plan, outage)
    assert first["unanswered"] == len(failing)
    assert first["reasons"][NO_ANSWER] == len(failing)
    judgments = read(out, "judgments")
    assert judgments.filter(pl.col("drop_reason") == NO_ANSWER).height == len(failing)
    assert "never got an answer" in (out / "README.md").read_text()
    assert NO_ANSWER not in first["errors"]  # not an invalid answer: no answer at all
    answered = judgments.filter(pl.col("error").is_null() & pl.col("winner_id").is_not_null())  # ties name none
    first_shown = (answered["winner_id"] == answered["first_response_id"]).sum() / answered.height
    assert first["first_position_rate"]["valid"] == round(first_shown, 4)

    recovered = WrapperJudge(make_judge(config.judge, config.seed), micro=None, failing=set())
    second = run_without_prefect(pipeline.plan(config, out), recovered)
    assert sorted(recovered.asked_keys) == sorted(failing)  # nothing answered is paid for twice
    assert second["unanswered"] == 0 and NO_ANSWER not in second["reasons"]
    assert second["reused_judgments"] == plan.num_units - len(failing)
    build(tiny_config, tmp_path / "clean")
    for name in ("preferences", "judgments"):
        assert read(out, name).equals(read(tmp_path / "clean", name)), name
    # each answer stored once, none lost (the persona-free run's too)
    assert BuildState(out).stored_judgments() == plan.num_units + persona_free_units(plan)


def test_leftover_temp_files_are_ignored_and_cleaned(tiny_config, tmp_path):
    out = tmp_path / "out"
    config = load_config(tiny_config)
    plan = pipeline.plan(config, out)
    state = BuildState(out)
    run = pipeline.prepare_output(plan)
    judge = make_judge(config.judge, config.seed)
    pipeline.run_shard(plan, run, 0, judge)
    # what a process killed mid-write leaves: a torn temp file beside stored judgments and beside shards
    torn = b"PAR1 torn"
    store = state.store_dir / plan.judge_key
    assert store.is_dir()
    (store / ".tmp-0123-0a1b2c.parquet").write_bytes(torn)
    (out / "data" / "judgments" / ".tmp-4567-train-00001.parquet").write_bytes(torn * 1000)
    summary = build(tiny_config, out)  # resumes without reading them
    assert not list(out.rglob(".tmp-*"))
    assert summary["judgments"] == plan.num_units
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    sizes = {c["config_name"]: c["download_size"] for c in card["dataset_info"]}
    assert sizes["judgments"] == sum(p.stat().st_size for p in (out / "data" / "judgments").iterdir())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"fingerprint": "abc', "invalid JSON"),
        ("{}", "fingerprint: Field required"),
        ("[1, 2]", "valid dictionary"),
        ('{"fingerprint": "f", "run_id": "r", "created_at": "garbage", "num_shards": 1, "num_units": 1}', "created_at"),
        (
            '{"fingerprint": "f", "run_id": "r", "created_at": "2026-01-01T00:00:00Z", '
            '"num_shards": "x", "num_units": 1}',
            "num_shards",
        ),
    ],
)
def test_a_damaged_state_file_is_a_clear_error(tiny_config, tmp_path, content, message):
    out = tmp_path / "out"
    build(tiny_config, out)
    (out / ".polypref" / "state.json").write_text(content)
    with pytest.raises(OutputError, match=message) as caught:
        pipeline.check_output(pipeline.plan(load_config(tiny_config), out))
    assert "state.json" in str(caught.value) and "--overwrite" in str(caught.value)
    pipeline.prepare_output(pipeline.plan(load_config(tiny_config), out), overwrite=True)  # the way out works


def test_a_damaged_shard_report_means_the_shard_is_made_again_from_the_store(tiny_config, tmp_path):
    out = tmp_path / "out"
    clean = build(tiny_config, out)
    report = out / ".polypref" / "shards" / "00000.json"
    report.write_text(report.read_text().replace('"preferences": ', '"preferences": "x", "was": '))
    shard = out / "data" / "judgments" / "train-00000.parquet"
    before = shard.stat().st_mtime_ns
    again = build(tiny_config, out)
    assert again["preferences"] == clean["preferences"] and again["judgments"] == clean["judgments"]
    assert again["reused_judgments"] == clean["judgments"]  # no judgment asked twice
    assert shard.stat().st_mtime_ns != before  # but the shard was written anew


def test_the_folders_documents_read_typed_and_write_back_the_same_json(tiny_config, tmp_path):
    """state.json, the shard reports and summary.json read as StateFile, ShardReport and Summary and give back the
    very dicts written (so the bytes on disk do not change); keys of a later version are kept, and a summary that
    is not one reads as none."""
    out = tmp_path / "out"
    returned = build(tiny_config, out)
    state, root = BuildState(out), out / ".polypref"
    on_disk = json.loads((root / "summary.json").read_text())
    summary = state.summary()
    assert summary is not None and summary.to_json() == on_disk == json.loads(json.dumps(returned, default=str))
    assert summary.preferences == returned["preferences"] and summary.rows("episodes") is None
    assert StateFile.from_json(json.loads((root / "state.json").read_text())).to_json() == json.loads(
        (root / "state.json").read_text()
    )
    for index, report in state.reports().items():
        assert report.to_json() == json.loads(state.report_path(index).read_text()) and report.index == index
    later = on_disk | {"a_later_figure": {"n": 1}}
    assert Summary.from_json(later).to_json() == later
    (root / "summary.json").write_text(json.dumps(on_disk | {"preferences": "many"}))
    assert state.summary() is None


def test_the_workers_judge_record_reads_back_as_written_and_as_earlier_versions_wrote_it(tmp_path):
    from dataclasses import asdict

    from polypref.build.documents import JudgeRecord
    from polypref.judges.base import JudgeInfo

    state = BuildState(tmp_path / "out")
    state.root.mkdir(parents=True)
    assert state.judge_record() is None
    info = JudgeInfo("openai", "m", simulated=False, params={"temperature": 0.0}, template="t:abc")
    state.write_judge_record(JudgeRecord("run-1", info))
    assert state.judge_record() == JudgeRecord("run-1", info)
    on_disk = json.loads((state.root / "judge-info.json").read_text())
    assert on_disk == {"run_id": "run-1", "judge": asdict(info)}  # the shape 0.2.0's workers wrote
    (state.root / "judge-info.json").write_text(json.dumps({"run_id": "run-1", "judge": {"model": 3}}))
    assert state.judge_record() is None  # damaged: read as none, so the persona-free run is done again


def test_a_dangling_symlink_as_the_output_folder_is_named(tiny_config, tmp_path):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere" / "dir")
    with pytest.raises(OutputError, match="symbolic link to a missing"):
        pipeline.check_output(pipeline.plan(load_config(tiny_config), link))


def test_a_path_below_a_file_is_a_clear_error(tiny_config, tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "out"):
        with pytest.raises(OutputError, match="file"):
            pipeline.check_output(pipeline.plan(load_config(tiny_config), out))


def test_a_read_only_folder_fails_before_any_work(tiny_config, tmp_path):
    """A read-only file system (root ignores permission bits, so a mode would test nothing), via the real CLI."""
    readonly = tmp_path / "readonly"
    with _small_disk(readonly, "1m", "ro"):
        for out in (readonly, readonly / "out"):
            done = run_cli("build", str(tiny_config), "--out", str(out))
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr + done.stdout
            assert "cannot write to" in done.stderr and "read-only" in done.stderr.lower()
            assert str(readonly) in done.stderr.replace("\n", "")
        assert list(readonly.iterdir()) == []


@contextlib.contextmanager
def _small_disk(path: Path, size: str, *options: str) -> Iterator[None]:
    """A tmpfs of the given size: a real full disk, ENOSPC and all (we run as root here and in CI)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_with_a_clear_error_and_no_half_shard(tiny_config, tmp_path):
    disk = tmp_path / "disk"
    with _small_disk(disk, "2m"):
        out = disk / "out"
        config = load_config(tiny_config)
        plan = pipeline.plan(config, out)
        run = pipeline.prepare_output(plan)
        judge = make_judge(config.judge, config.seed)
        pipeline.run_shard(plan, run, 0, judge)
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:  # fill the disk up to the last byte
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        with pytest.raises(OutputError, match="disk is full"):
            pipeline.run_shard(plan, run, 1, judge)
        for name in ("judgments", "preferences"):  # a shard's tables appear together or not at all
            assert sorted(p.name for p in (out / "data" / name).iterdir()) == ["train-00000.parquet"]
        assert pipeline.shard_report(plan, 1) is None
        filler.unlink()
        resumed = build(tiny_config, out)
        assert resumed["judgments"] == plan.num_units
        build(tiny_config, tmp_path / "clean")
        for name in ("preferences", "judgments"):
            assert read(out, name).equals(read(tmp_path / "clean", name)), name


def test_operational_settings_resume_and_data_settings_do_not(tiny_config, tiny, tmp_path):
    out = tmp_path / "out"
    build(tiny_config, out)
    base = pipeline.plan(load_config(tiny_config), out).fingerprint
    operational = ["output.workers=7", "output.license=mit", "output.pretty_name=x", "output.row_group_rows=5000"]
    for override in operational:
        plan = pipeline.plan(load_config(tiny_config, [override]), out)
        assert plan.fingerprint == base, override
        assert pipeline.check_output(plan) is not None  # resumes: no --overwrite needed
    for override in ["seed=4", "filters.min_agreement=0.9", "judge.noise=0.2", "output.units_per_shard=300"]:
        assert pipeline.plan(load_config(tiny_config, [override]), out).fingerprint != base, override
    table = pl.read_parquet(tiny["dir"] / "survey.parquet")
    table.with_columns(w=pl.col("w") * 2).write_parquet(tiny["dir"] / "survey.parquet")  # same spec, new data
    changed = pipeline.plan(load_config(tiny_config), out)
    assert changed.fingerprint != base
    assert pipeline.check_output(changed) is not None and not changed.keeps_folder  # rebuilt, from the store


def test_llm_operational_settings_do_not_change_the_fingerprint(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("K", "secret-key")
    llm = ["judge.backend=openai", "judge.model=m", "judge.api_key_env=K"]
    base = pipeline.plan(load_config(tiny_config, llm), tmp_path).fingerprint
    for override in [
        "judge.concurrency=3",
        "judge.max_concurrency=9",
        "judge.timeout_s=5",
        "judge.micro_batch=8",
        "judge.max_retries=1",
        "judge.base_url=http://127.0.0.1:9/v1",
    ]:
        assert pipeline.plan(load_config(tiny_config, [*llm, override]), tmp_path).fingerprint == base, override
    for override in ["judge.model=other", "judge.temperature=0.5", "judge.mode=choice"]:
        assert pipeline.plan(load_config(tiny_config, [*llm, override]), tmp_path).fingerprint != base, override


def test_planning_twice_samples_once(tiny_config, tiny, tmp_path):
    config = load_config(tiny_config)
    first = pipeline.plan(config, tmp_path / "out")
    assert pipeline.plan(config, tmp_path / "out") is first  # the CLI's plan is the flow's plan
    items = tiny["items"]
    items.write_text(items.read_text() + "\n")
    os.utime(items, ns=(0, 0))
    second = pipeline.plan(config, tmp_path / "out")
    assert second is not first  # a changed input is read again
    table = pl.read_parquet(tiny["dir"] / "survey.parquet")
    table.with_columns(w=pl.col("w") * 2).write_parquet(tiny["dir"] / "survey.parquet")
    assert pipeline.plan(config, tmp_path / "out") is not second  # and so is a changed survey table


def test_a_partial_build_loads_by_config_name(tiny_config, tmp_path):
    from tests.conftest import load_with_datasets

    out = tmp_path / "out"
    config = load_config(tiny_config)
    plan = pipeline.plan(config, out)
    run = pipeline.prepare_output(plan)
    pipeline.run_shard(plan, run, 0, make_judge(config.judge, config.seed))
    assert load_with_datasets(out, "personas").num_rows == len(plan.population.personas)
    judgments = load_with_datasets(out, "judgments")
    assert judgments.num_rows == len(plan.batch(0))
    assert "in progress" in (out / "README.md").read_text()
    assert json.loads((out / ".polypref" / "state.json").read_text())["num_shards"] == plan.num_shards


def test_finished_shards_judged_again_in_the_same_process_ask_nothing(tiny_config, tmp_path):
    """A finished shard's keys leave the store's in-memory index (it stays flat over 10^7 judgments); should the
    same process judge its shards again with the same plan and store (here: the plan, made before the folder held
    a build, rebuilds it), their answers are read back from disk, not paid for twice."""
    from tests.judges import WrapperJudge

    out = tmp_path / "out"
    plan = pipeline.plan(load_config(tiny_config), out)
    judge = WrapperJudge(make_judge(plan.config.judge, plan.config.seed))
    first = run_without_prefect(plan, judge, persona_free=False)
    asked = judge.asked
    assert asked == first["judgments"] and plan.num_shards > 2
    keys = ["persona_id", "pair_id", "order", "sample"]
    before = read(out, "judgments").sort(keys)
    second = run_without_prefect(plan, judge, persona_free=False)  # the same plan and store: one process
    assert judge.asked == asked  # nothing asked again: every shard came back from the store
    assert second["judgments"] == first["judgments"]
    assert read(out, "judgments").sort(keys).equals(before)  # run ids and times aside (read drops them)
