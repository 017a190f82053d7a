"""One progress total over every unit a build needs, reported by the core as it goes: it ends exactly at the
total (the persona-free run and adaptive sampling included), and without a terminal it prints plain lines."""

from __future__ import annotations

import pytest

from polypref import pipeline, progress
from polypref.cli.build import _progress_bar
from polypref.config import load_config
from tests.conftest import persona_free_units, run_without_prefect


def _track(plan) -> progress.Snapshot:
    bar = _progress_bar(plan, enabled=False)
    with bar:
        run_without_prefect(plan)
    return bar.tracker.snapshot()


@pytest.mark.parametrize("overrides", [[], ["adaptive.enabled=true", "judge.samples=3"]], ids=["fixed", "adaptive"])
def test_progress_ends_exactly_at_its_total_first_run_and_rerun(tiny_config, tmp_path, overrides):
    plan = pipeline.plan(load_config(tiny_config, overrides), tmp_path / "out")
    first = _track(plan)
    assert first.total == plan.num_units + persona_free_units(plan)  # the persona-free run is in the total
    assert first.done == first.total and first.phase == progress.JUDGING
    again = _track(pipeline.plan(load_config(tiny_config, overrides), tmp_path / "out"))  # all found saved
    assert again.done == again.total == first.total


def test_without_a_terminal_a_plain_line_comes_every_interval(tiny_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_progress_bar, "PLAIN_EVERY_S", 0.01)
    plan = pipeline.plan(load_config(tiny_config), tmp_path / "out")
    bar = _progress_bar(plan, enabled=True)
    assert not bar.terminal  # pytest's stderr is no terminal
    with bar:
        run_without_prefect(plan)
        bar.stop.wait(0.05)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert lines and all("judging" in line and "/s" in line for line in lines)
    total = f"/{plan.num_units + persona_free_units(plan):,} "
    assert all(total in line for line in lines)


def test_reports_go_nowhere_without_a_tracker(tiny_config, tmp_path):
    progress.advance(progress.JUDGING, 5)  # no tracker installed: a no-op, no error
    tracker = progress.Tracker()
    tracker.expect(progress.JUDGING, 10)
    with progress.tracking(tracker):
        progress.advance(progress.JUDGING, 4)
    progress.advance(progress.JUDGING, 4)
    assert tracker.snapshot().done == 4
