"""A build's workers as flow runs on a Prefect work pool (runner.kind: workpool).

The head (the build flow) deploys flows/build.py:judge_shards to the pool, starts output.workers flow runs of it
and waits until the folder holds every shard. Whoever serves the pool runs them: `prefect worker start --pool
polypref --limit 1`, one per GPU (pinned with CUDA_VISIBLE_DEVICES), on any machine that sees the build folder.
A worker that dies leaves its flow run running in Prefect's eyes; the others take over its shard when its
lease lapses, and the head ends when the dataset is complete, not when every flow run has.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any
from uuid import UUID

from polypref import assets
from polypref.build.documents import ShardReport
from polypref.build.plan import BuildPlan, RunState
from polypref.errors import Interrupted, OutputError
from polypref.interrupt import signal_name, stop_requested
from polypref.judges import JudgeInfo
from polypref.runners import workers
from polypref.runners.check import flow_parameters

log = logging.getLogger("polypref.runners.workpool")

WORKER_FLOW = "judge-shards"  # the flow's name; its deployment is named after the pool


def judge_all(plan: BuildPlan, run: RunState, source: str) -> tuple[list[ShardReport], JudgeInfo, Any]:
    """The pool's workers take the shards (each loads its judge once); the head then gathers what they saved."""
    run_workers(plan, run, source)
    return workers.gather(plan, run)


def run_workers(plan: BuildPlan, run: RunState, source: str) -> None:
    """Start the workers' flow runs on the pool and wait until the build's jobs are all done."""
    config = plan.config
    pool = config.runner.pool
    parameters = flow_parameters(config, plan.out.resolve(), source, 0)
    parameters.pop("add_personas")  # the head grew the folder already; workers plan from it as it is
    deployment = _deploy(pool)
    from prefect.deployments import run_deployment

    runs = [
        run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=True).id
        for _ in range(workers.worker_count(plan))
    ]
    log.info("started %d worker flow runs on pool %s", len(runs), pool)
    try:
        _wait(plan, run, runs, config.runner.poll_s)
    except BaseException:
        _cancel(runs)
        raise


def _deploy(pool: str) -> str:
    """Make the pool (process type) if missing and (re)deploy the worker flow to it from the installed assets."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.flows import Flow
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            with contextlib.suppress(ObjectAlreadyExists):  # made by another head meanwhile
                client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
    flow: Any = Flow.from_source(source=str(assets.root()), entrypoint="flows/build.py:judge_shards")
    flow.to_deployment(name=pool, work_pool_name=pool).apply()  # as flow.deploy() does, without its console table
    return f"{WORKER_FLOW}/{pool}"


def _wait(plan: BuildPlan, run: RunState, runs: list[UUID], poll_s: float) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        while not workers.finished(plan, run):
            if stop_requested():
                raise Interrupted(signal_name())
            states = [client.read_flow_run(r).state for r in runs]
            if all(s is not None and s.is_final() for s in states) and not workers.finished(plan, run):
                ended = "; ".join(f"{s.name}: {(s.message or '')[:300]}" for s in states if s is not None)
                raise OutputError(f"every worker flow run ended before the build was complete ({ended})")
            time.sleep(poll_s)


def _cancel(runs: list[UUID]) -> None:
    """The head stopped: its workers' flow runs are cancelled (each stops after its micro-batch in flight)."""
    from prefect import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        for r in runs:
            try:
                state = client.read_flow_run(r).state
                if state is None or not state.is_final():
                    client.set_flow_run_state(r, Cancelling(), force=True)
            except Exception as e:  # best effort: the head is stopping anyway
                log.warning("could not cancel worker flow run %s: %s", r, e)
