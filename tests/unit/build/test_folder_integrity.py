"""A build folder's files are trusted only while they hold the bytes the build wrote: a damaged shard is made again
from the judgment store (no request), and a push refuses anything but one whole, finished build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.errors import OutputError
from polypref.hub import publish
from polypref.judges import make_judge
from tests.conftest import run_cli, run_without_prefect
from tests.judges import WrapperJudge


def _build(config_path: Path, out: Path, overrides: tuple[str, ...] = ()) -> tuple[dict, WrapperJudge]:
    plan = pipeline.plan(load_config(config_path, list(overrides)), out)
    judge = WrapperJudge(make_judge(plan.config.judge, plan.config.seed))
    return run_without_prefect(plan, judge), judge


def _flip(path: Path, at: float = 0.4) -> None:
    """One byte flipped inside the file's data pages (not its footer): it may still read, with garbled values."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("config", ["preferences", "judgments"])
def test_a_shard_with_a_flipped_byte_is_made_again_from_the_store_with_no_request(tiny_config, tmp_path, config):
    out = tmp_path / "out"
    first, _ = _build(tiny_config, out)
    shard = out / "data" / config / "train-00001.parquet"
    original = shard.read_bytes()
    _flip(shard)
    assert BuildState(out).whole_build_problems()  # push would refuse it as it is
    again, judge = _build(tiny_config, out)
    assert judge.asked == 0  # every judgment came from the store
    assert shard.read_bytes() == original  # the same bytes as the build first wrote
    assert again["preferences"] == first["preferences"] and BuildState(out).whole_build_problems() == []


def test_a_damaged_personas_or_weights_file_is_written_again(tiny_config, tmp_path):
    out = tmp_path / "out"
    _build(tiny_config, out)
    personas, weights = (out / "data" / c / "train-00000.parquet" for c in ("personas", "weights"))
    originals = personas.read_bytes(), weights.read_bytes()
    _flip(personas)
    _flip(weights)
    problems = BuildState(out).whole_build_problems()
    assert any(str(personas) in p for p in problems) and any(str(weights) in p for p in problems)
    _, judge = _build(tiny_config, out)
    assert judge.asked == 0 and (personas.read_bytes(), weights.read_bytes()) == originals


def test_a_whole_build_has_no_problems_and_each_kind_of_damage_is_named(tiny_config, tmp_path):
    out = tmp_path / "out"
    _build(tiny_config, out)
    state = BuildState(out)
    assert state.whole_build_problems() == []

    (out / "data" / "preferences" / "train-00002.parquet").unlink()
    assert "train-00002.parquet is missing" in state.whole_build_problems()[0]
    _build(tiny_config, out)  # repaired

    temp = out / "data" / "judgments" / ".tmp-0a1b-train-00001.parquet"
    temp.write_bytes(b"PAR1 torn")
    assert state.whole_build_problems() == [f"{temp} is a temp file a killed writer left"]
    temp.unlink()

    stray = out / "data" / "preferences" / "extra.parquet"
    stray.write_bytes((out / "data" / "preferences" / "train-00000.parquet").read_bytes())
    assert state.whole_build_problems() == [f"{stray} is not a file this build wrote"]
    stray.unlink()
    assert state.whole_build_problems() == []


def test_a_refresh_cut_short_is_not_a_whole_build(tiny_config, tmp_path):
    """A refresh that added personas and stopped before its last shards: the folder's state names the new
    layout, its summary the old run, so a push would publish new shards under the old card."""
    out = tmp_path / "out"
    _build(tiny_config, out)
    grown = pipeline.plan(load_config(tiny_config), out, add_personas=30)
    run = pipeline.prepare_output(grown)
    judge = make_judge(grown.config.judge, grown.config.seed)
    done = [pipeline.run_shard(grown, run, i, judge).index for i in range(grown.num_shards - 1)]
    problems = BuildState(out).whole_build_problems()
    assert problems == [
        f"its latest run ({run.run_id}) stopped before it finished: {len(done)} of {grown.num_shards} shards are done"
    ]
    with pytest.raises(publish.PublishError, match="is not a whole build, so nothing was pushed: its latest run"):
        publish.check_folder(out)


def test_a_folder_never_built_is_told_to_build_first(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(publish.PublishError, match="holds no polypref build, so nothing was pushed: build it first"):
        publish.check_folder(tmp_path)


def test_a_state_file_cannot_send_status_or_the_build_outside_the_folder(tiny_config, tmp_path):
    out = tmp_path / "out"
    _build(tiny_config, out)
    state_file = out / ".polypref" / "state.json"
    state = json.loads(state_file.read_text())
    state["judge_key"] = "../../../../etc"
    state_file.write_text(json.dumps(state))
    with pytest.raises(OutputError, match="judge_key"):
        BuildState(out).held()
    with pytest.raises(OutputError, match="not a store folder"):
        BuildState(out).store("..")
    result = run_cli("status", str(out))
    assert result.returncode == 2 and "judge_key" in result.stderr and "Traceback" not in result.stderr
