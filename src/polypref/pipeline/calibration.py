"""The calibrator a build's preferences use: for the simulated judge, one fitted for its own settings on fixed
reference builds of the shipped population and items (run here, in memory, as a build judges and filters); for
every other judge the shipped fit (analysis/calibration.py holds the features, the fit and the shipped file)."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import polars as pl

from polypref.analysis.calibration import Calibrator, fit, pair_features, shipped
from polypref.config import load_config
from polypref.dataset.tables import RunMeta, judgments_frame
from polypref.filters import apply_filters, filters_from_config
from polypref.judges import collect_verdicts, make_judge
from polypref.judges.base import JudgeInfo
from polypref.pipeline import planning
from polypref.records import PAIR_KEYS

FILTERS = (
    ("filters.swap_consistency=true", "filters.min_agreement=0.75", "filters.min_confidence=0.6"),
    ("filters.swap_consistency=true", "filters.min_agreement=0", "filters.min_confidence=0"),
    ("filters.swap_consistency=false", "filters.min_agreement=0", "filters.min_confidence=0"),
)
FILTER_NAMES = ["default", "no agreement or confidence minimum", "no minimum and no swap filter"]
PERSONAS = 60
REFERENCE_PERSONAS = 120  # a conditioned fit: one judge, so more personas for the same rows as a grid cell
SEED = 0


def simulated_rows(overrides: Sequence[str], personas: int = PERSONAS, seed: int = SEED) -> pl.DataFrame:
    """Features and truth (``correct``) of every preference of a simulated build of the shipped GSS spending
    population and items, judged and filtered in memory exactly as a build does (nothing is written)."""
    base = [
        f"seed={seed}",
        "population.spec=gss_spending",
        f"population.size={personas}",
        "items.source=gss_spending",
        "judge.backend=simulated",
    ]
    config = load_config(None, [*base, *overrides])
    with tempfile.TemporaryDirectory() as folder:
        plan = planning.plan(config, Path(folder) / "out", remember=False)
        judge = make_judge(config.judge, config.seed, None)
        meta = RunMeta("fit", datetime(2026, 1, 1, tzinfo=UTC), judge.info)
        frames = []
        for index in range(plan.num_shards):
            batch = plan.batch(index)
            frame = judgments_frame(batch, collect_verdicts(judge, batch), meta)
            frame = apply_filters(frame, filters_from_config(config.filters))
            truth = frame.group_by(PAIR_KEYS).agg(pl.col("true_side").first())
            frames.append(
                pair_features(frame)
                .join(truth, on=PAIR_KEYS, how="left")
                .with_columns(correct=(pl.col("chosen_side") == pl.col("true_side")).fill_null(False))
            )
        judge.close()
    return pl.concat(frames)


def calibrator_for(judge: JudgeInfo) -> Calibrator:
    """The calibrator of a judge's preferences: for the simulator, one fitted for its own settings (noise,
    position bias, temperature, tie margin, confidence noise, samples) on a fixed reference build, since one fit
    over a grid of judges is off wherever a judge differs from the grid's average (a bin's accuracy drifts 0.1
    from its confidence); for every other judge, whose behaviour is unknown, the shipped fit over the grid."""
    if not judge.simulated:
        return shipped()
    with _FITTING:  # the shard threads ask at once: one fits, the others wait and take its fit from the cache
        return _fitted_for(json.dumps(judge.params, sort_keys=True))


_FITTING = threading.Lock()


@cache
def _fitted_for(params: str) -> Calibrator:
    """A fixed function of the settings (reference population, items and seed are fixed), so every process of
    a build (work pool, Ray) fits the same map and a grown build keeps its shards' confidences."""
    judge = [f"judge.{name}={value}" for name, value in sorted(json.loads(params).items())]
    rows = pl.concat([simulated_rows([*judge, *filters], REFERENCE_PERSONAS) for filters in FILTERS])
    summary = {
        "judge": "the simulated judge with this dataset's settings, on the gss_spending population and items",
        "settings": json.loads(params),
        "personas": REFERENCE_PERSONAS,
        "seed": SEED,
        "filters": FILTER_NAMES,
    }
    return fit(rows, summary)
