"""`polypref serve` refuses schedules that never fire (or fire less than yearly) before Prefect starts.

An infinite or huge --interval used to end in an OverflowError traceback, and a cron on a date that never comes
(31 February) served forever, warning, without a run or a line saying it served.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from polypref.errors import ConfigError
from polypref.runners.schedules import make_schedule
from tests.conftest import polypref_command

DAYS_366 = 366 * 24 * 3600


@pytest.mark.parametrize("interval", [float("inf"), 1e20, float("nan"), DAYS_366 + 1, 0])
def test_an_interval_that_is_not_finite_or_past_a_year_is_refused(interval: float) -> None:
    with pytest.raises(ConfigError) as refused:
        make_schedule("0 3 * * *", interval)
    assert refused.value.problems[0][0] == "--interval"
    assert "at most 366 days" in refused.value.problems[0][1]


@pytest.mark.parametrize("cron", ["0 3 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_cron_that_never_fires_is_refused(cron: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_schedule(cron, None)
    assert refused.value.problems == [
        ("--cron", f"'{cron}' never fires within the next 5 years (a date that never comes, such as 31 February?)")
    ]


@pytest.mark.parametrize(("cron", "interval"), [("0 3 * * *", None), ("0 0 29 2 *", None), ("", DAYS_366), ("", 1)])
def test_schedules_that_fire_at_least_yearly_are_kept(cron: str, interval: float | None) -> None:
    schedule = make_schedule(cron, interval)
    assert type(schedule).__name__ == ("IntervalSchedule" if interval else "CronSchedule")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "inf"], "--interval: must be a number of seconds > 0 and at most 366 days (31622400 s)"),
        (["--interval", "1e20"], "--interval: must be a number of seconds > 0 and at most 366 days (31622400 s)"),
        (["--cron", "0 3 31 2 *"], "--cron: '0 3 31 2 *' never fires within the next 5 years"),
        (["--cron", "not a cron"], '--cron: Value error, Invalid cron string: "not a cron"'),
    ],
    ids=["interval-inf", "interval-1e20", "cron-31-february", "cron-invalid"],
)
@pytest.mark.process
def test_serve_refuses_a_schedule_that_never_fires_before_prefect_starts(
    tiny: dict[str, Path], args: list[str], message: str
) -> None:
    base = ["--set", f"population.spec={tiny['spec']}", "--set", f"items.source={tiny['items']}"]
    base += ["--set", "population.size=4", "--out", str(tiny["dir"] / "out")]
    prefect_home = tiny["dir"] / "prefect-home"  # Prefect's server would create its database here
    result = subprocess.run(
        polypref_command("serve", *base, *args),
        cwd=tiny["dir"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_HOME": str(prefect_home)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    assert any(line.strip().startswith(message) for line in result.stderr.splitlines()), result.stderr
    assert "serving" not in result.stdout
    assert not (tiny["dir"] / "out").exists()
    assert not (prefect_home / "prefect.db").exists()  # Prefect's server never started
