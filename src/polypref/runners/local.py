"""The local runner (runner.kind: local): every shard in this process, output.workers threads sharing one judge (an
engine loads once), run by Prefect's ThreadPoolTaskRunner inside the build flow. One task run = one shard.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from polypref import pipeline
from polypref.errors import Interrupted, retry_unless_polypref_error
from polypref.interrupt import signal_name, stop_requested
from polypref.judges import Judge, JudgeInfo, make_judge


@task(
    name="judge-shard",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_unless_polypref_error,
)
def judge_shard(plan: pipeline.BuildPlan, run: pipeline.RunState, index: int, judge: Judge) -> pipeline.ShardReport:
    if stop_requested():  # a shard that has not started yet would judge a whole micro-batch before stopping
        raise Interrupted(signal_name())
    return pipeline.run_shard(plan, run, index, judge)


@task(name="judge-persona-free", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_unless_polypref_error)
def judge_persona_free(plan: pipeline.BuildPlan, run: pipeline.RunState, judge: Judge) -> Any:
    """The judge's own votes on every pair, without a persona: where the preference-space map places the model."""
    return pipeline.persona_free_votes(plan, run, judge)


def judge_all(
    plan: pipeline.BuildPlan, run: pipeline.RunState, source: str
) -> tuple[list[pipeline.ShardReport], JudgeInfo, Any]:
    """Every shard in this process, then the persona-free votes, with one judge."""
    config = plan.config
    judge = make_judge(config.judge, config.seed, plan.state.judge_dir)
    try:
        # the config, not the decorator, decides how many shards run at once
        with ThreadPoolTaskRunner(max_workers=config.output.workers) as runner:
            # quote(): Prefect would otherwise walk every persona looking for futures, once per task
            futures = [
                runner.submit(judge_shard, {"plan": quote(plan), "run": quote(run), "index": i, "judge": quote(judge)})
                for i in range(plan.num_shards)
            ]
            reports = [f.result() for f in futures]
        free_votes = judge_persona_free(quote(plan), quote(run), quote(judge))
    finally:
        judge.close()
    return reports, judge.info, free_votes
