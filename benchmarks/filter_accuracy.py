"""What the filters and adaptive sampling buy against the simulator's exact truth, over a range of judge noise.

    python benchmarks/filter_accuracy.py [--personas 200] [--seed 0]

Builds the default config (GSS spending personas and items) in-process with the simulated judge (no Prefect)
at each lapse rate (``judge.noise``) and first-position bias (``judge.position_bias``, a logit) of a grid, three
ways: no optional filter (swap consistency off, agreement and confidence 0: only invalid judgments and
indifferent personas are dropped), the default filters at a fixed ``judge.samples: 3``, and the same filters with
adaptive sampling (``adaptive.enabled``, budget 3). Calls are counted on the judge itself (a wrapper counting the
units it is asked for) and checked against the build summary's ``judge_requests``.

Figures (ground truth: the simulator's noiseless choice, ``matches_ground_truth``):

- accuracy_unfiltered: the raw judgments that name the truth: every valid verdict of the unfiltered build, as a
  dataset labelled by one judgment per question (as Fair-PP's was) would be. A persona indifferent between the
  two responses (the truth is a tie) counts as right only where the verdict says tie;
  accuracy_unfiltered_leaning is the same over the verdicts whose persona has a true preference.
- accuracy_majority_unfiltered: the unfiltered build's preferences (the majority of every valid judgment of a
  (persona, pair), both orders and all samples) that match the truth; a (persona, pair) whose judgments are level
  has no majority, hence no preference, and is left out (``accuracy_majority_ties_wrong`` counts it as wrong).
- accuracy_filtered, retention, ece: the filtered fixed-k build's preferences: accuracy, preferences per
  (persona, pair) judged, and the 10-bin expected calibration error of ``confidence`` against
  ``matches_ground_truth`` (equal-width bins on [0, 1], weighted by count); largest_gap_50: the reliability
  table's bin of at least 50 preferences whose accuracy is furthest from its mean confidence (as the card says).
- calls_per_kept_fixed / calls_per_kept_adaptive: judge calls per preference kept; accuracy_adaptive,
  retention_adaptive, ece_adaptive: as above for the adaptive build; calls_ratio: adaptive over fixed.

Prints a table for the grid, the noisy setting's variants (stop_confidence 0, min_lead 2, and both rules
without the confidence filter, as a judge whose confidence carries no signal would need), then as its last line
JSON with the figures at the noisy setting (lapse rate 0.2, position bias 1.0). Targets there:
accuracy_filtered - accuracy_unfiltered >= 0.10 at retention >= 0.70; ece <= 0.05; calls_ratio <= 0.6 with
accuracy_adaptive >= accuracy_filtered - 0.01.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polypref import pipeline
from polypref.config import load_config
from polypref.judges import make_judge
from polypref.judges.base import Judge
from polypref.records import UnitBatch

NOISES = (0.0, 0.1, 0.2, 0.3)
BIASES = (0.0, 0.5, 1.0, 2.0)
NOISY = (0.2, 1.0)
BUDGET = 3
UNFILTERED = ["filters.swap_consistency=false", "filters.min_agreement=0", "filters.min_confidence=0"]
ADAPTIVE = ["adaptive.enabled=true"]


class CountingJudge:
    """The configured judge, counting the units it is asked to judge (one request each for the simulator)."""

    def __init__(self, judge: Judge):
        self.inner = judge
        self.info = judge.info
        self.calls = 0

    def judge(self, batch: UnitBatch) -> Iterator[pl.DataFrame]:
        self.calls += len(batch)
        yield from self.inner.judge(batch)

    def close(self) -> None:
        self.inner.close()


def build(settings: list[str], out: Path) -> tuple[dict[str, Any], pl.DataFrame, int]:
    """One build in-process, as the flow runs it: (summary, preferences, calls the judge got)."""
    plan = pipeline.plan(load_config(None, settings), out)
    judge = CountingJudge(make_judge(plan.config.judge, plan.config.seed, plan.state.judge_dir))
    try:
        run = pipeline.prepare_output(plan)
        reports = [pipeline.run_shard(plan, run, i, judge) for i in range(plan.num_shards)]
    finally:
        judge.close()
    summary = pipeline.finalize(plan, run, reports, judge.info).to_json()
    if summary["judge_requests"] != judge.calls:
        raise SystemExit(f"summary says {summary['judge_requests']} requests, the judge got {judge.calls}")
    return summary, pl.read_parquet(out / "data" / "preferences" / "*.parquet"), judge.calls


def ece(preferences: pl.DataFrame, bins: int = 10) -> float | None:
    """Expected calibration error of ``confidence`` against ``matches_ground_truth``."""
    if not preferences.height:
        return None
    confidence = preferences["confidence"].to_numpy()
    correct = preferences["matches_ground_truth"].cast(pl.Float64).to_numpy()
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return round(total / len(confidence), 4)


def _accuracy(preferences: pl.DataFrame) -> float | None:
    return round(float(preferences["matches_ground_truth"].mean()), 4) if preferences.height else None  # type: ignore[arg-type]


def measure(base: list[str], root: Path, variants: bool = False) -> dict[str, Any]:
    """Every figure of one judge setting."""
    figures: dict[str, Any] = {}
    summary, raw, _ = build([*base, *UNFILTERED], root / "unfiltered")
    units = summary["personas"] * summary["pairs"]
    verdicts = pl.read_parquet(root / "unfiltered" / "data" / "judgments" / "*.parquet").filter(
        pl.col("error").is_null()
    )
    named = verdicts["choice"] == verdicts["true_choice"]  # as presented; a true tie is named by "tie"
    figures["accuracy_unfiltered"] = round(float(named.mean()), 4)  # type: ignore[arg-type]
    leaning = verdicts.filter(pl.col("true_choice") != "tie")
    figures["accuracy_unfiltered_leaning"] = round(float((leaning["choice"] == leaning["true_choice"]).mean()), 4)
    figures["accuracy_majority_unfiltered"] = _accuracy(raw)
    figures["accuracy_majority_ties_wrong"] = round(int(raw["matches_ground_truth"].sum()) / units, 4)
    summary, fixed, calls = build(base, root / "fixed")
    figures |= {
        "accuracy_filtered": _accuracy(fixed),
        "retention": round(fixed.height / units, 4),
        "ece": ece(fixed),
        "largest_gap_50": summary["calibration"].get("largest_gap_50"),
        "calls_per_kept_fixed": round(calls / fixed.height, 4) if fixed.height else None,
    }
    summary, adaptive, calls = build([*base, *ADAPTIVE], root / "adaptive")
    figures |= {
        "calls_per_kept_adaptive": round(calls / adaptive.height, 4) if adaptive.height else None,
        "accuracy_adaptive": _accuracy(adaptive),
        "retention_adaptive": round(adaptive.height / units, 4),
        "ece_adaptive": ece(adaptive),
        "samples_per_pair_adaptive": summary["samples_per_pair"],
    }
    if figures["calls_per_kept_fixed"] and figures["calls_per_kept_adaptive"]:
        figures["calls_ratio"] = round(figures["calls_per_kept_adaptive"] / figures["calls_per_kept_fixed"], 4)
    if variants:
        figures["variants"] = _variants(base, root)
    return figures


def _variants(base: list[str], root: Path) -> list[dict[str, Any]]:
    """The rule's other settings, and both rules with the confidence filter off."""
    rows = []
    for name, extra in (
        ("adaptive, stop_confidence 0", [*ADAPTIVE, "adaptive.stop_confidence=0"]),
        ("adaptive, min_lead 2", [*ADAPTIVE, "adaptive.min_lead=2"]),
        ("fixed k=3, no confidence filter", ["filters.min_confidence=0"]),
        ("adaptive, no confidence filter", [*ADAPTIVE, "filters.min_confidence=0"]),
        ("adaptive, min_lead 2, no confidence filter", [*ADAPTIVE, "adaptive.min_lead=2", "filters.min_confidence=0"]),
    ):
        summary, prefs, calls = build([*base, *extra], root / name.replace(" ", "_").replace(",", ""))
        units = summary["personas"] * summary["pairs"]
        rows.append(
            {
                "variant": name,
                "accuracy": _accuracy(prefs),
                "retention": round(prefs.height / units, 4),
                "calls_per_kept": round(calls / prefs.height, 4) if prefs.height else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=200, help="Personas per build")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every build")
    args = parser.parse_args()

    common = [f"population.size={args.personas}", f"seed={args.seed}", f"judge.samples={BUDGET}"]
    header = (
        f"{'noise':>5} {'bias':>4} | {'acc_raw':>7} {'acc_filt':>8} {'retain':>6} {'ece':>6} | "
        f"{'calls/kept k=3':>14} {'adaptive':>8} {'ratio':>5} {'acc_adapt':>9} {'retain':>6}"
    )
    print(header)
    print("-" * len(header))
    noisy: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for noise in NOISES:
            for bias in BIASES:
                at_noisy = (noise, bias) == NOISY
                base = [*common, f"judge.noise={noise}", f"judge.position_bias={bias}"]
                f = measure(base, Path(tmp) / f"n{noise}-b{bias}", variants=at_noisy)
                print(
                    f"{noise:>5} {bias:>4} | {f['accuracy_unfiltered']:>7} {f['accuracy_filtered']:>8} "
                    f"{f['retention']:>6} {f['ece']:>6} | {f['calls_per_kept_fixed']:>14} "
                    f"{f['calls_per_kept_adaptive']:>8} {f.get('calls_ratio', '-'):>5} "
                    f"{f['accuracy_adaptive']:>9} {f['retention_adaptive']:>6}",
                    flush=True,
                )
                if at_noisy:
                    noisy = f
    print()
    print(f"noisy setting (noise {NOISY[0]}, position bias {NOISY[1]}): other settings of the rule")
    for row in noisy.pop("variants"):
        print(
            f"  {row['variant']:<45} accuracy {row['accuracy']}, retention {row['retention']}, "
            f"calls/kept {row['calls_per_kept']}"
        )
    noisy["noise"], noisy["position_bias"], noisy["budget"] = NOISY[0], NOISY[1], BUDGET
    print(json.dumps(noisy))


if __name__ == "__main__":
    main()
