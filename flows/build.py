"""Prefect flow: build a persona preference dataset. Thin: the work lives in polypref.pipeline.

One task run = one shard (output.units_per_shard judgments, 50,000 by default), never one judgment. Shards that
already finished are skipped, so a failed or interrupted run resumes when started again with the same config and
--out.
Entrypoint for deployments: flows/build.py:build_dataset (see flows/prefect.yaml).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from polypref import pipeline
from polypref.analysis import evaluate as evaluation
from polypref.build.lock import folder_lock
from polypref.config import BuildConfig
from polypref.errors import retry_unless_polypref_error
from polypref.fidelity import FidelityReport
from polypref.fidelity import report as fidelity_report
from polypref.hub import publish
from polypref.pipeline import fidelity
from polypref.runners import judge_build, workers, workpool
from polypref.runners.check import check_runner


@task(name="generate-responses", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_unless_polypref_error)
def generate_responses(plan: pipeline.BuildPlan) -> pipeline.BuildPlan:
    """All generated responses of the build in one task: generation batches and saves by itself."""
    return pipeline.generate_responses(plan)


@task(name="check-fidelity", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_unless_polypref_error)
def check_fidelity(plan: pipeline.BuildPlan, overwrite: bool = False) -> FidelityReport:
    """Ask the personas the survey's own questions (saved with the build: a rerun asks nothing, unless
    ``overwrite``) and show the figures as an artifact."""
    report = fidelity.for_build(plan, reuse=not overwrite)
    create_markdown_artifact(key="fidelity", markdown=fidelity_report.markdown(report))
    return report


@flow(name="build-dataset", validate_parameters=True)
def build_dataset(
    config: BuildConfig, out: str, overwrite: bool = False, source: str = "config", add_personas: int = 0
) -> dict[str, Any]:
    """Sample personas, judge each (persona, pair) in both orders, filter, and write the dataset.

    ``add_personas`` grows the population past what ``out`` already holds (a scheduled refresh); ``source``
    names the config in error messages. The CLI passes what it planned with, so this call finds the
    CLI's plan in pipeline.plan's memo instead of sampling the population again.

    Holds ``out``'s lock throughout (the CLI's, when it runs the flow; a served run takes its own): a second
    build on the folder stops at once instead of mixing its shards with this one's.
    """
    with folder_lock(out):
        return _build(config, out, overwrite, source, add_personas)


def _build(config: BuildConfig, out: str, overwrite: bool, source: str, add_personas: int) -> dict[str, Any]:
    check_runner(config, source)
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
        fidelity_report.save(plan, report)
    if config.generate is not None:  # before the judge: a vLLM generator and a vLLM judge would share the GPU
        plan = generate_responses(quote(plan))
    reports, info, free_votes = judge_build(plan, run, source)  # by the runner runner.kind names (RUNNERS)
    summary = pipeline.finalize(plan, run, reports, info, free_votes)
    create_table_artifact(
        key="filter-outcomes",
        table=[{"outcome": k, "judgments": v} for k, v in summary.reasons.items()],
        description=f"Judgments per filter outcome, run {summary.run_id}",
    )
    create_markdown_artifact(
        key="personalization",
        markdown=evaluation.markdown(summary.personalization),
        description="Accuracy on held-out personas: the population's majorities against k of their own labels",
    )
    published, said = None, ""
    if config.publish.repo and summary.unanswered:  # publish only a complete build
        published = {"repo": config.publish.repo, "tag": None, "skipped": "judgments got no answer"}
        said = f" Not published: {summary.unanswered} judgments got no answer; run the build again."
    elif config.publish.repo:
        published = publish_dataset(out, config)
        said = f" Published to `{config.publish.repo}` as `{published['tag']}`."
    create_markdown_artifact(
        key="build-summary",
        markdown=f"# polypref build `{summary.run_id}`\n\n{summary.personas} personas, "
        f"{summary.judgments} judgments, {summary.preferences} preferences in `{out}`.{said}",
    )
    # a JSON document, as Prefect stores a flow's result: the summary as summary.json holds it, and the push
    return {**summary.to_json(), "published": published}


@flow(name=workpool.WORKER_FLOW, validate_parameters=True)
def judge_shards(config: BuildConfig, out: str, source: str = "config") -> dict[str, Any]:
    """One worker of a build on a Prefect work pool (runner.kind: workpool): load the judge once, then judge the
    shards it claims until none is left. Started by build_dataset, one flow run per worker."""
    return workers.work_from_config(config, out, source).to_dict()


@task(name="publish", cache_policy=NO_CACHE, retries=1, retry_condition_fn=retry_unless_polypref_error)
def publish_dataset(out: str, config: BuildConfig) -> dict[str, Any]:
    """Push the finished build to the config's Hub repo (polypref push, with its own retries and resume)."""
    result = publish.push(
        out, config.publish.repo or "", private=config.publish.private, revision=config.publish.revision
    )
    return {"repo": result.repo, "tag": result.tag, "commits": result.commits, "uploaded": len(result.uploaded)}
