"""Adaptive sampling as a user runs it: `polypref build` (Prefect flow) with the simulated judge, against the
same build at a fixed number of samples; then `polypref status` on the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from polypref.build.state import BuildState
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

NOISY = ["judge.samples=3", "judge.noise=0.2", "judge.position_bias=1.0"]


def _build(config: Path, out: Path, settings: list[str]) -> dict[str, Any]:
    args = ["build", str(config), "--out", str(out), "--no-progress"]
    for setting in settings:
        args += ["--set", setting]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stdout + stderr
    return json.loads((BuildState(out).root / "summary.json").read_text())


def _rows(out: Path, config: str) -> pl.DataFrame:
    frame = pl.read_parquet(sorted((out / "data" / config).glob("*.parquet")))
    keys = [k for k in ("persona_id", "pair_id", "order", "sample") if k in frame.columns]
    return frame.drop("run_id", "created_at").sort(keys)


def test_an_adaptive_build_costs_fewer_calls_and_rebuilds_the_same_rows(tiny_config: Path, tmp_path: Path) -> None:
    fixed = _build(tiny_config, tmp_path / "fixed", NOISY)
    adaptive = _build(tiny_config, tmp_path / "adaptive", [*NOISY, "adaptive.enabled=true"])

    assert fixed["judge_requests"] == fixed["judgments"] == fixed["planned_judgments"]
    assert adaptive["planned_judgments"] == fixed["planned_judgments"]
    assert adaptive["judge_requests"] == adaptive["judgments"] < 0.7 * fixed["judgments"]
    assert adaptive["calls_per_kept"] < 0.7 * fixed["calls_per_kept"]
    assert adaptive["adaptive"] == {"budget": 3, "min_lead": 1, "min_samples": 1, "stop_confidence": 0.7}
    assert fixed["adaptive"] is None
    counts = {int(n): c for n, c in adaptive["samples_per_pair"].items()}
    assert set(counts) <= {1, 2, 3} and sum(n * 2 * c for n, c in counts.items()) == adaptive["judgments"]
    judgments = _rows(tmp_path / "adaptive", "judgments")
    assert judgments.height == adaptive["judgments"]

    # the same config in another folder, judged from scratch: the same rows
    again = _build(tiny_config, tmp_path / "again", [*NOISY, "adaptive.enabled=true"])
    assert again["judge_requests"] == adaptive["judge_requests"]
    for config in ("judgments", "preferences"):
        assert _rows(tmp_path / "again", config).equals(_rows(tmp_path / "adaptive", config))

    code, stdout, stderr = run_cli("status", str(tmp_path / "adaptive"), "--json", "-")
    assert code == 0, stderr
    figures = json.loads(stdout)
    assert figures["finished"] is True
    assert figures["judgments"] == {
        "planned": adaptive["planned_judgments"],
        "in_finished_shards": adaptive["judgments"],
        "planned_in_finished_shards": adaptive["planned_judgments"],
    }
    # the store also holds the persona-free run (the map), at most every pair in both orders and all samples
    assert 0 < figures["requests"] - adaptive["judge_requests"] <= adaptive["pairs"] * 2 * 3
    code, stdout, _ = run_cli("status", str(tmp_path / "adaptive"))
    assert code == 0 and f"cover {adaptive['planned_judgments']} of the {adaptive['planned_judgments']}" in stdout
