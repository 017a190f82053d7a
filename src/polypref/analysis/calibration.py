"""Calibrated confidence: one probability per preference that its chosen response is the persona's true pick.

A judge's own confidence is not that probability: the simulator's is its chance of the option it picked, position
bias included, and an LLM's verbal or logprob confidence is whatever the model says. Four signals of one
(persona, pair), all from its own shard's judgments, are combined instead:

- ``debiased_logodds``: the log-odds the judge gave the chosen side, averaged within each order and then over
  the two orders, so a position bias (a logit added to whichever response is shown first) cancels;
- ``swap_agreement``: the share of samples whose AB and BA verdicts name the same side (all valid samples, not
  only kept ones);
- ``sample_agreement``: the share of all valid verdicts that name the chosen side;
- ``judge_confidence``: the mean confidence of the kept verdicts (verbal 0-100/100, or the logprob probability
  in an LLM judge's choice mode; one kind per build).

A ridge logistic regression (Platt scaling on several features) turns them into a score and isotonic regression
(pool-adjacent-violators) turns the score into a probability (both in ``analysis.scaling``). Both are fitted on
simulated builds with known truth. For an LLM judge, whose behaviour polypref cannot know, the fit covers a grid
of noise, position bias, temperature, tie margin, samples and filters, and ships as
``data/calibration/simulated.json``;
``python benchmarks/calibration_refit.py --fit`` refits it and ``--check`` says whether it is current. The
simulated judge's settings are known, so its calibrator is fitted for exactly those settings, on a fixed
reference build (``polypref.pipeline.calibration.calibrator_for``): one fit over the grid is off wherever a
judge differs from the grid's average. Either way a row's confidence is a fixed function of its shard's judgments
and the judge's settings, so shards stay byte-identical when a build grows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polypref import assets
from polypref.analysis.scaling import Isotonic, Platt, fit_isotonic, fit_platt_increasing
from polypref.judges.base import JudgeInfo
from polypref.records import PAIR_KEYS

FEATURES = ("debiased_logodds", "swap_agreement", "sample_agreement", "judge_confidence")
EPS = 1e-3  # confidences are clipped to [EPS, 1 - EPS] before log-odds: a judge's 1.0 is not infinite evidence
FLOOR, CEILING = 0.01, 0.99  # no calibrated probability claims certainty (see Calibrator.predict)
BINS = 10
SHIPPED = ("calibration", "simulated.json")
TRUTH_COLUMNS = ("matches_ground_truth", "source_label_agrees")
GAP_MIN_ROWS = 50  # the card's per-bin check looks at bins holding at least this many preferences


# -- features --------------------------------------------------------------------------------------------------
def pair_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (persona, pair) with kept judgments: its chosen side and the calibrator's features.

    ``frame`` is a filtered judgments frame (every judgment of the pairs, dropped ones too, with the vote's
    ``majority``). Swap and sample agreement count all valid verdicts, not only kept ones: the filters keep
    exactly the verdicts that agree, so kept ones alone would always look unanimous.
    """
    chosen = (
        frame.filter(pl.col("drop_reason").is_null())
        .group_by(PAIR_KEYS, maintain_order=True)
        .agg(chosen_side=pl.col("majority").first(), judge_confidence=pl.col("confidence").mean())
    )
    side = pl.col("side")
    conf = pl.col("confidence").fill_null(0.5).clip(EPS, 1 - EPS)
    q = (
        pl.when(side == pl.col("chosen_side"))
        .then(conf)
        .when((side == "tie") | ~pl.col("chosen_side").is_in(["a", "b"]))
        .then(0.5)
        .otherwise(1 - conf)
    )
    valid = frame.filter(pl.col("error").is_null() & side.is_not_null()).join(
        chosen.select(*PAIR_KEYS, "chosen_side"), on=PAIR_KEYS, how="inner"
    )
    logodds = (
        valid.group_by(*PAIR_KEYS, "order")
        .agg(lo=(q / (1 - q)).log().mean())
        .group_by(PAIR_KEYS)
        .agg(debiased_logodds=pl.col("lo").mean())
    )
    swaps = (
        valid.group_by(*PAIR_KEYS, "sample")
        .agg(complete=pl.col("order").n_unique() == 2, same=side.n_unique() == 1)
        .group_by(PAIR_KEYS)
        .agg(
            swap_agreement=pl.when(pl.col("complete").any()).then(
                (pl.col("complete") & pl.col("same")).sum() / pl.col("complete").sum()
            )
        )
    )
    samples = valid.group_by(PAIR_KEYS).agg(sample_agreement=(side == pl.col("chosen_side")).mean())
    return (
        chosen.join(logodds, on=PAIR_KEYS, how="left")
        .join(swaps, on=PAIR_KEYS, how="left")
        .join(samples, on=PAIR_KEYS, how="left")
        .with_columns(
            # no valid verdict or no sample judged in both orders: no evidence either way
            pl.col("debiased_logodds").fill_null(0.0),
            pl.col("swap_agreement").fill_null(0.5).cast(pl.Float64),
            pl.col("sample_agreement").fill_null(0.5),
            pl.col("judge_confidence").fill_null(0.5),
        )
    )


def _design(features: pl.DataFrame) -> np.ndarray:
    """The regression's inputs: judge confidence enters as log-odds, like the debiased signal."""
    conf = np.clip(features["judge_confidence"].to_numpy().astype(np.float64), EPS, 1 - EPS)
    return np.column_stack(
        [
            features["debiased_logodds"].to_numpy().astype(np.float64),
            features["swap_agreement"].to_numpy().astype(np.float64),
            features["sample_agreement"].to_numpy().astype(np.float64),
            np.log(conf / (1 - conf)),
        ]
    )


# -- the calibrator ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibrator:
    """Features -> Platt score -> isotonic probability, clipped to [FLOOR, CEILING]."""

    platt: Platt
    isotonic: Isotonic
    fitted_on: dict[str, Any]

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        """The simulator's confidences reveal its truth almost exactly, so the fitted map runs to 0 and 1; the
        clip keeps any row from claiming certainty, at most 0.01 of calibration error where it binds."""
        if features.height == 0:
            return np.empty(0)
        return np.clip(self.isotonic(self.platt.score(_design(features))), FLOOR, CEILING)

    def to_json(self) -> str:
        """A small, stable text: rounded numbers, so a refit on another machine reads the same."""

        def r(a: np.ndarray | float) -> Any:
            return np.round(np.asarray(a, dtype=np.float64), 6).tolist()

        data = {
            "features": list(FEATURES),
            "platt": {
                "weights": r(self.platt.weights),
                "bias": r(self.platt.bias),
                "mean": r(self.platt.mean),
                "scale": r(self.platt.scale),
            },
            "isotonic": {"x": r(self.isotonic.x), "y": r(self.isotonic.y)},
            "clip": [FLOOR, CEILING],
            "fitted_on": self.fitted_on,
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data = json.loads(text)
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"calibrator features {data['features']} are not {list(FEATURES)}; refit it")
        p, iso = data["platt"], data["isotonic"]
        return cls(
            Platt(np.array(p["weights"]), float(p["bias"]), np.array(p["mean"]), np.array(p["scale"])),
            Isotonic(np.array(iso["x"]), np.array(iso["y"])),
            data["fitted_on"],
        )


@cache
def shipped() -> Calibrator:
    return Calibrator.from_json(assets.path("data", *SHIPPED).read_text())


def shipped_digest() -> str:
    """Names the calibrator a build used (a refit changes every row's confidence)."""
    return hashlib.sha256(assets.path("data", *SHIPPED).read_bytes()).hexdigest()[:12]


def calibrator_digest(calibrator: Calibrator) -> str:
    return hashlib.sha256(calibrator.to_json().encode()).hexdigest()[:12]


def calibrate(features: pl.DataFrame, calibrator: Calibrator | None = None) -> pl.Series:
    """Calibrated confidence per row of ``pair_features``, rounded to 4 decimals like the judge's own."""
    values = (calibrator or shipped()).predict(features)
    return pl.Series("confidence", np.round(values, 4), dtype=pl.Float64)


def confidence_kind(judge: JudgeInfo) -> str:
    """What the judge's ``confidence`` column holds, for the card."""
    if judge.simulated:
        return "simulator probability"
    return "logprob" if judge.params.get("mode") == "choice" else "verbal"


# -- measuring calibration ---------------------------------------------------------------------------------------
def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> float:
    """Sum over equal-width bins of (share of rows) x |mean confidence - accuracy|; the last bin includes 1.0."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if len(c) == 0:
        return 0.0
    index = _bin_index(c, bins)
    gap = np.abs(np.bincount(index, weights=c, minlength=bins) - np.bincount(index, weights=y, minlength=bins))
    return float(gap.sum() / len(c))  # sum_k n_k/N |conf_k - acc_k| = sum_k |sum conf - sum y| / N


def reliability_table(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> list[dict[str, Any]]:
    """Per non-empty bin: its range, rows, mean confidence and accuracy."""
    c = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    index = _bin_index(c, bins)
    rows = []
    for k in range(bins):
        mask = index == k
        if mask.any():
            rows.append(
                {
                    "bin": f"{k / bins:.1f}-{(k + 1) / bins:.1f}",
                    "n": int(mask.sum()),
                    "confidence": round(float(c[mask].mean()), 4),
                    "accuracy": round(float(y[mask].mean()), 4),
                }
            )
    return rows


def largest_gap(table: Sequence[dict[str, Any]], min_rows: int = 1) -> dict[str, Any] | None:
    """The bin (of those holding at least ``min_rows``) whose accuracy is furthest from its mean confidence:
    ECE averages over rows, so a small bin that is badly off hides behind many good ones."""
    bins = [dict(b, gap=round(b["accuracy"] - b["confidence"], 4)) for b in table if b["n"] >= min_rows]
    return max(bins, key=lambda b: abs(b["gap"])) if bins else None


def _read_preferences(out: Path) -> pl.DataFrame:
    """The columns the report needs from every preferences shard (older shards may lack judge_confidence)."""
    wanted = ("confidence", "judge_confidence", *TRUTH_COLUMNS)
    frames = []
    for path in sorted((Path(out) / "data" / "preferences").glob("*.parquet")):
        names = pl.read_parquet_schema(path)
        frame = pl.read_parquet(path, columns=[c for c in wanted if c in names])
        frames.append(frame.with_columns(pl.lit(None, pl.Float64).alias(c) for c in wanted if c not in names))
    schema = {"confidence": pl.Float64, "judge_confidence": pl.Float64} | {c: pl.Boolean for c in TRUTH_COLUMNS}
    return pl.concat([f.cast(schema) for f in frames]) if frames else pl.DataFrame(schema=schema)


def calibration_report(
    out: Path, judge: JudgeInfo | None = None, calibrator: Calibrator | None = None
) -> dict[str, Any]:
    """ECE and a reliability table of a built folder's preference confidences, against the best truth there is:
    the simulator's ground truth, else the source's own labels, else none. ``calibrator``: the one the build
    used (default: the shipped one)."""
    prefs = _read_preferences(out)
    conditioned = judge is not None and judge.simulated
    calibrator = calibrator if calibrator is not None else shipped()
    report: dict[str, Any] = {
        "calibrator": {
            "conditioned": conditioned,
            "file": None if conditioned else "/".join(("data", *SHIPPED)),
            "digest": calibrator_digest(calibrator) if conditioned else shipped_digest(),
            "clip": [FLOOR, CEILING],
            "fitted_on": calibrator.fitted_on,
        },
        "confidence_kind": confidence_kind(judge) if judge is not None else None,
        "mean_confidence": round(float(prefs["confidence"].mean()), 4) if prefs.height else None,
        "truth": None,
    }
    for truth in TRUTH_COLUMNS:
        scored = prefs.filter(pl.col(truth).is_not_null() & pl.col("confidence").is_not_null())
        if scored.height:
            correct = scored[truth].to_numpy()
            raw = scored.filter(pl.col("judge_confidence").is_not_null())
            table = reliability_table(scored["confidence"].to_numpy(), correct)
            return report | {
                "truth": truth,
                "rows": scored.height,
                "accuracy": round(float(correct.mean()), 4),
                "ece": round(expected_calibration_error(scored["confidence"].to_numpy(), correct), 4),
                "largest_gap": largest_gap(table),
                "largest_gap_50": largest_gap(table, min_rows=GAP_MIN_ROWS),
                "ece_judge": round(
                    expected_calibration_error(raw["judge_confidence"].to_numpy(), raw[truth].to_numpy()), 4
                )
                if raw.height
                else None,
                "reliability": table,
            }
    return report


# -- fitting -----------------------------------------------------------------------------------------------------
def fit(rows: pl.DataFrame, about: dict[str, Any]) -> Calibrator:
    """Platt on the features, then isotonic on the Platt score (which Platt alone cannot shape: ties in the
    simulator's truth sit at debiased log-odds 0 and are never "correct", a step no sigmoid follows)."""
    x, y = _design(rows), rows["correct"].to_numpy().astype(np.float64)
    platt = fit_platt_increasing(x, y)
    score = np.round(platt.score(x), 3)  # rounded: fewer knots, and the same file on any machine
    isotonic = fit_isotonic(score, y)
    fitted = Calibrator(platt, isotonic, {})
    conf = fitted.predict(rows)
    summary = about | {
        "rows": rows.height,
        "accuracy": round(float(y.mean()), 4),
        "ece": round(expected_calibration_error(conf, y), 4),
        "ece_judge": round(expected_calibration_error(rows["judge_confidence"].to_numpy(), y), 4),
    }
    return Calibrator(platt, isotonic, summary)
