"""A build's workers as Prefect tasks on a Ray cluster (runner.kind: ray), through prefect-ray's task runner.

Each task is one worker (polypref.runners.workers): it loads the judge once, in its Ray worker process, on the GPUs
runner.gpus_per_worker reserves, and takes shard after shard. Defined here, not in flows/, so that Ray's worker
processes import it rather than unpickle a copy of the flow file.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from polypref.build.documents import ShardReport
from polypref.build.plan import BuildPlan, RunState
from polypref.config import BuildConfig
from polypref.errors import retry_unless_polypref_error
from polypref.judges import JudgeInfo
from polypref.runners import workers
from polypref.runners.prefect_server import PREFECT_DEFAULTS, own_server_url


@task(name="judge-worker", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_unless_polypref_error)
def judge_worker(config: BuildConfig, out: str, source: str) -> dict[str, Any]:
    """One worker. A retry after a crash waits for the lease it held to lapse, then takes its shard back."""
    return workers.work_from_config(config, out, source).to_dict()


def judge_all(plan: BuildPlan, run: RunState, source: str) -> tuple[list[ShardReport], JudgeInfo, Any]:
    """The cluster's workers take the shards (each loads its judge once); the head then gathers what they saved."""
    run_workers(plan, source)
    return workers.gather(plan, run)


def run_workers(plan: BuildPlan, source: str) -> list[dict[str, Any]]:
    """output.workers workers on the cluster at runner.ray_address (null: a local cluster, one CPU per worker);
    returns what each did."""
    from prefect_ray import RayTaskRunner
    from prefect_ray.context import remote_options

    _ship_flow_file_by_value()
    config = plan.config
    count = workers.worker_count(plan)
    init: dict[str, Any] = {"runtime_env": {"env_vars": _prefect_environment()}}
    if config.runner.ray_address is None:
        # a cluster of our own: its start-up INFO and the notices about running off the main thread are noise
        # beside the build's progress (a cluster the user runs logs as they configured it)
        init |= {"num_cpus": count, "logging_level": logging.ERROR}
    with RayTaskRunner(address=config.runner.ray_address, init_kwargs=init) as runner:
        with remote_options(num_gpus=config.runner.gpus_per_worker):
            futures = [
                runner.submit(judge_worker, {"config": config, "out": str(plan.out.resolve()), "source": source})
                for _ in range(count)
            ]
        return [future.result() for future in futures]


def _ship_flow_file_by_value() -> None:
    """Prefect sends each task the flow run's context, the flow in it; the flow lives in flows/build.py, loaded
    from its file under a module name Ray's workers cannot import. Pickled by value, it needs no import there."""
    import sys

    from prefect.context import FlowRunContext
    from ray import cloudpickle

    context = FlowRunContext.get()
    module = sys.modules.get(context.flow.fn.__module__) if context and context.flow else None
    if module is not None and not module.__name__.startswith("polypref"):
        cloudpickle.register_pickle_by_value(module)


def _prefect_environment() -> dict[str, str]:
    """The Prefect settings the head runs with, for the workers' task runs: the same API (this process's own
    server when it runs an ephemeral one, which a local cluster reaches), not an ephemeral server each; and
    polars' threads, one per worker unless POLARS_MAX_THREADS says otherwise."""
    import os

    from prefect.settings import PREFECT_API_URL

    env = {k: os.environ[k] for k in PREFECT_DEFAULTS if k in os.environ}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value() or own_server_url()
    # a worker task holds one CPU of the cluster (Ray's default): polars' pool would otherwise take every core
    # of the node, as many times as the node has workers (Ray sets OMP_NUM_THREADS=1 for the same reason)
    env["POLARS_MAX_THREADS"] = os.environ.get("POLARS_MAX_THREADS", "1")
    return env
