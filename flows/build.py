"""Prefect flow: build a persona preference dataset. Thin: the work lives in polypref.pipeline.

One task run = one shard (output.units_per_shard judgments, 50,000 by default), never one judgment. Shards that
already finished are skipped, so a failed or interrupted run resumes when started again with the same config and
--out.
Entrypoint for deployments: flows/build.py:build_dataset (see flows/prefect.yaml).
"""

from __future__ import annotations

from typing import Any

from prefect import Task, flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from polypref import pipeline, publish
from polypref.config import BuildConfig
from polypref.errors import Interrupted, PolyprefError
from polypref.fidelity import FidelityReport
from polypref.fidelity import run as fidelity
from polypref.interrupt import signal_name, stop_requested
from polypref.judges import Judge, make_judge


def retry_unless_polypref_error(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """A PolyprefError says retrying cannot help: the judge's setup is wrong (a 401 would be sent again by
    every request of every retry) or a stop was asked for. Anything else may be passing, and is retried.

    A plain function on purpose: Prefect calls only functions and coroutine functions, and treats any other
    callable as "never retry" (prefect/task_engine.py, SyncTaskRunEngine.can_retry).
    """
    return not isinstance(state.data, PolyprefError)  # can_retry puts the exception in the Failed state's data


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


@task(name="generate-responses", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_unless_polypref_error)
def generate_responses(plan: pipeline.BuildPlan) -> pipeline.BuildPlan:
    """All generated responses of the build in one task: generation batches and saves by itself."""
    return pipeline.generate_responses(plan)


@task(name="judge-persona-free", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_unless_polypref_error)
def judge_persona_free(plan: pipeline.BuildPlan, run: pipeline.RunState, judge: Judge) -> Any:
    """The judge's own votes on every pair, without a persona: where the preference-space map places the model."""
    return pipeline.persona_free_votes(plan, run, judge)


@task(name="check-fidelity", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_unless_polypref_error)
def check_fidelity(plan: pipeline.BuildPlan, overwrite: bool = False) -> FidelityReport:
    """Ask the personas the survey's own questions (saved with the build: a rerun asks nothing, unless
    ``overwrite``) and show the figures as an artifact."""
    report = fidelity.for_build(plan, reuse=not overwrite)
    create_markdown_artifact(key="fidelity", markdown=fidelity.markdown(report))
    return report


@flow(name="build-dataset", validate_parameters=True)
def build_dataset(
    config: BuildConfig, out: str, overwrite: bool = False, source: str = "config", add_personas: int = 0
) -> dict[str, Any]:
    """Sample personas, judge each (persona, pair) in both orders, filter, and write the dataset.

    ``add_personas`` grows the population past what ``out`` already holds (a scheduled refresh); ``source``
    names the config in error messages. The CLI passes what it planned with, so this call finds the
    CLI's plan in pipeline.plan's memo instead of sampling the population again.
    """
    plan = pipeline.plan(config, out, source, add_personas, overwrite)
    report = None
    if config.fidelity.check:
        # before the folder is touched (a gate that stops the build leaves the dataset it holds as it was) and
        # before the judge's engine loads (a vLLM check runs an engine of its own)
        pipeline.check_output(plan, overwrite)
        report = check_fidelity(quote(plan), overwrite)
        fidelity.gate(report, config)
    run = pipeline.prepare_output(plan, overwrite)
    if report is not None:
        fidelity.save(plan, report)
    if config.generate is not None:  # before the judge: a vLLM generator and a vLLM judge would share the GPU
        plan = generate_responses(quote(plan))
    judge = make_judge(config.judge, config.seed, plan.state.judge_dir)  # once per run: an engine loads once
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
    summary = pipeline.finalize(plan, run, reports, judge.info, free_votes)
    create_table_artifact(
        key="filter-outcomes",
        table=[{"outcome": k, "judgments": v} for k, v in summary["reasons"].items()],
        description=f"Judgments per filter outcome, run {summary['run_id']}",
    )
    published = ""
    if config.publish.repo and summary.get("unanswered"):  # publish only a complete build
        summary["published"] = {"repo": config.publish.repo, "tag": None, "skipped": "judgments got no answer"}
        published = f" Not published: {summary['unanswered']} judgments got no answer; run the build again."
    elif config.publish.repo:
        summary["published"] = publish_dataset(out, config)
        published = f" Published to `{config.publish.repo}` as `{summary['published']['tag']}`."
    create_markdown_artifact(
        key="build-summary",
        markdown=f"# polypref build `{summary['run_id']}`\n\n{summary['personas']} personas, "
        f"{summary['judgments']} judgments, {summary['preferences']} preferences in `{out}`.{published}",
    )
    return summary


@task(name="publish", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_unless_polypref_error)
def publish_dataset(out: str, config: BuildConfig) -> dict[str, Any]:
    """Push the finished build to the config's Hub repo (polypref push, with its own retries and resume)."""
    result = publish.push(
        out, config.publish.repo or "", private=config.publish.private, revision=config.publish.revision
    )
    return {"repo": result.repo, "tag": result.tag, "commits": result.commits, "uploaded": len(result.uploaded)}
