"""Where shards are judged: in this process (local), by a Prefect work pool's workers, or on a Ray cluster; the
Prefect server a command-line run uses, signals and stopping, and serving a build on a schedule.

``RUNNERS`` is the one list of runners: runner.kind -> the module that judges a build that way, imported only when
a build runs it (Prefect, Ray), and what it needs, which ``runners.check`` asks before any work without importing
it. config.py's ``RunnerConfig.kind`` lists the same kinds (config sits below runners and cannot ask this);
tests/unit/runners/test_runner_registry.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polypref.build.documents import ShardReport
    from polypref.build.plan import BuildPlan, RunState
    from polypref.judges import JudgeInfo


@dataclass(frozen=True)
class Runner:
    """One runner.kind. ``module`` defines ``judge_all(plan, run, source)``, which gets every shard of a prepared
    build judged and returns (shard reports, the judge's info, the persona-free votes).

    What it needs, checked before any work: ``packages``, optional packages it imports (name -> what to install),
    and ``shared_server``, workers started through a Prefect server they share with the head, which get the config
    as Prefect stores flow parameters."""

    module: str
    packages: Mapping[str, str] = field(default_factory=dict)
    shared_server: bool = False


RUNNERS: dict[str, Runner] = {
    "local": Runner("polypref.runners.local"),
    "workpool": Runner("polypref.runners.workpool", shared_server=True),
    "ray": Runner("polypref.runners.ray_workers", packages={"prefect_ray": "prefect-ray: pip install 'polypref[ray]'"}),
}


def judge_build(plan: BuildPlan, run: RunState, source: str) -> tuple[list[ShardReport], JudgeInfo, Any]:
    """Every shard of a prepared build, judged by the runner its config names (runner.kind)."""
    return import_module(RUNNERS[plan.config.runner.kind].module).judge_all(plan, run, source)
