"""The one seam flows call: plan() -> prepare_output() -> run_shard() per shard -> finalize().

Plain Python with no Prefect import, so the whole build runs and tests without an orchestrator. Shards are
persona-major blocks of personas: every order and sample of a (persona, pair) lands in one shard, so the
swap and agreement filters stay shard-local and a shard is judged, filtered and written on its own. One module
per stage: planning, checks, output, shards, finalizing (and calibration, the fidelity check for a build).
"""

from polypref.build.documents import ShardReport
from polypref.build.plan import BuildPlan, RunState
from polypref.pipeline.checks import annotation_inputs, check_before_work, check_endpoints
from polypref.pipeline.finalizing import finalize, map_summary
from polypref.pipeline.output import check_output, generate_responses, latest_run, prepare_output
from polypref.pipeline.planning import plan
from polypref.pipeline.shards import other_requests, persona_free_votes, run_shard, shard_report

__all__ = [
    "BuildPlan",
    "RunState",
    "ShardReport",
    "annotation_inputs",
    "check_before_work",
    "check_endpoints",
    "check_output",
    "finalize",
    "generate_responses",
    "latest_run",
    "map_summary",
    "other_requests",
    "persona_free_votes",
    "plan",
    "prepare_output",
    "run_shard",
    "shard_report",
]
