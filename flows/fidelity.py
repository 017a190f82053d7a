"""Prefect flow: the fidelity check on its own (``polypref fidelity``). Thin: the work lives in polypref.fidelity.

Samples the personas a build with the same config would judge, asks them the survey's own questions, and
scores their answers against the survey's distributions, beside a persona-free run of the same model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from polypref.config import BuildConfig
from polypref.fidelity import FidelityReport
from polypref.fidelity import report as fidelity_report
from polypref.pipeline import fidelity


@task(name="ask-survey-questions", cache_policy=NO_CACHE)
def ask(config: BuildConfig, source: str) -> dict[str, Any]:
    population = fidelity.standalone_population(config, source)
    with tempfile.TemporaryDirectory(prefix="polypref-fidelity-") as work:
        return fidelity.run(population, config, Path(work)).as_json()


@flow(name="fidelity", validate_parameters=True)
def check_fidelity(config: BuildConfig, source: str = "config") -> dict[str, Any]:
    """Fidelity figures as ``polypref fidelity --json`` writes them."""
    figures = ask(config, source)
    create_markdown_artifact(key="fidelity", markdown=fidelity_report.markdown(FidelityReport.from_json(figures)))
    return figures
