"""What each worker of a distributed build does (Prefect work-pool flow runs, Ray tasks): plan from the folder the
head prepared, load one judge, and judge job after job it claims until the build has none left.

Plain Python like the pipeline: the flows only choose where a worker runs. The jobs are the build's shards and
its persona-free run; a lease (runners.claims) keeps two workers off one job, and the judgment store (shared
through the folder) lets a worker that takes over a dead one's job ask only for what was never saved.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from polypref import pipeline
from polypref.build.documents import JudgeRecord, ShardReport
from polypref.build.plan import BuildPlan, RunState
from polypref.config import BuildConfig
from polypref.errors import Interrupted, OutputError
from polypref.interrupt import signal_name, stop_requested
from polypref.judges import Judge, JudgeInfo, make_judge
from polypref.judges.stored import StoredOnlyJudge
from polypref.runners.claims import PERSONA_FREE, ShardClaims

log = logging.getLogger("polypref.runners.workers")


@dataclass
class WorkerReport:
    """What one worker did: the jobs it finished (shard indices; -1 for the persona-free run)."""

    holder: str
    jobs: list[int] = field(default_factory=list)
    units: int = 0  # units of the shards it finished (asked for or found stored)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_for_worker(config: BuildConfig, out: str | Path, source: str = "config") -> tuple[BuildPlan, RunState]:
    """The head's plan, made again from its config and the folder (deterministic: the same personas, pairs and
    shards), with the generated responses the head saved."""
    plan = pipeline.plan(config, out, source)
    run = pipeline.latest_run(plan)
    if config.generate is not None:
        plan = pipeline.generate_responses(plan)  # saved by the head before it started workers: no requests
    return plan, run


def work(
    plan: BuildPlan, run: RunState, judge: Judge, lease_s: float, poll_s: float = 1.0, claims: ShardClaims | None = None
) -> WorkerReport:
    """Judge jobs of the build until none is left: unclaimed first, then those whose worker stopped renewing its
    lease. Returns once every shard is finished and the persona-free run is stored, whoever did them."""
    claims = claims or ShardClaims(plan.state.claims_dir, lease_s)
    report = WorkerReport(claims.holder)
    try:
        while True:
            left = [i for i in range(plan.num_shards) if pipeline.shard_report(plan, i) is None]
            if not left and persona_free_done(plan, run):
                return report
            jobs = [str(i) for i in left] if left else [PERSONA_FREE]
            took = False
            for job in jobs:
                if stop_requested():
                    raise Interrupted(signal_name())
                if not claims.claim(job):
                    continue
                took = True
                with claims.holding(job):
                    plan.store.refresh()  # what other workers saved, a dead one's micro-batches included
                    if job == PERSONA_FREE:
                        if not persona_free_done(plan, run):
                            pipeline.persona_free_votes(plan, run, judge)
                            plan.state.write_judge_record(JudgeRecord(run.run_id, judge.info))
                            report.jobs.append(-1)
                    elif pipeline.shard_report(plan, int(job)) is None:  # finished by another since we looked
                        done = pipeline.run_shard(plan, run, int(job), judge)
                        report.jobs.append(done.index)
                        report.units += done.units
            if not took:
                time.sleep(poll_s)  # every job left is held by a live worker: wait, in case one dies
    finally:
        claims.close()


def work_from_config(config: BuildConfig, out: str, source: str = "config") -> WorkerReport:
    """A whole worker: plan, load the judge once (an engine stays warm across every job it takes), work."""
    plan, run = plan_for_worker(config, out, source)
    judge = make_judge(config.judge, config.seed, plan.state.judge_dir)
    try:
        report = work(plan, run, judge, config.runner.lease_s, config.runner.poll_s)
    finally:
        judge.close()
    log.info("worker %s finished jobs %s", report.holder, report.jobs)
    return report


def persona_free_done(plan: BuildPlan, run: RunState) -> bool:
    record = plan.state.judge_record()
    return record is not None and record.run_id == run.run_id


def gather(plan: BuildPlan, run: RunState) -> tuple[list[ShardReport], JudgeInfo, pl.DataFrame]:
    """For the head once its workers are done: every shard's report, the workers' judge, and the persona-free
    votes read back from the store (a vote no worker got an answer for is counted unanswered, not asked here)."""
    reports = [pipeline.shard_report(plan, i) for i in range(plan.num_shards)]
    missing = [i for i, r in enumerate(reports) if r is None]
    saved = plan.state.judge_record()
    if missing or saved is None or saved.run_id != run.run_id:
        left = f"shards {missing[:10]}" if missing else "the persona-free run"
        raise OutputError(f"the workers stopped with {left} unfinished; run the build again to resume")
    plan.store.refresh()
    free = pipeline.persona_free_votes(plan, run, StoredOnlyJudge(saved.judge))
    return [r for r in reports if r is not None], saved.judge, free


def worker_count(plan: BuildPlan) -> int:
    """output.workers, but never more workers than jobs (the shards and the persona-free run)."""
    return max(1, min(plan.config.output.workers, plan.num_shards + 1))


def finished(plan: BuildPlan, run: RunState) -> bool:
    """Every shard has its report and the persona-free run is stored."""
    return len([i for i in plan.state.reports() if i < plan.num_shards]) == plan.num_shards and persona_free_done(
        plan, run
    )
