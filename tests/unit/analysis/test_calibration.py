"""Calibrated confidence: PAV and Platt on data with known answers, ECE by hand, features of crafted judgments,
and simulated builds whose calibrated confidence must beat the judge's own."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polypref import pipeline
from polypref.analysis.calibration import (
    FEATURES,
    Calibrator,
    calibrate,
    calibration_report,
    expected_calibration_error,
    fit,
    pair_features,
    reliability_table,
    shipped,
)
from polypref.analysis.scaling import fit_isotonic, fit_platt
from polypref.config import load_config
from polypref.judges import make_judge
from polypref.pipeline.calibration import calibrator_for, simulated_rows
from tests.conftest import run_without_prefect


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# -- isotonic and Platt ------------------------------------------------------------------------------------------
def test_pav_pools_violators_into_their_mean():
    iso = fit_isotonic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert iso(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [0.5, 0.5, 1.0, 1.0]
    assert iso(np.array([0.0, 2.5, 9.0])).tolist() == [0.5, 0.75, 1.0]  # flat outside, linear between blocks


def test_pav_pools_equal_inputs_first_and_honours_weights():
    iso = fit_isotonic(np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0, 0.0]))
    assert iso(np.array([1.0, 2.0])) == pytest.approx([1 / 3, 1 / 3])
    weighted = fit_isotonic(np.array([1.0, 2.0]), np.array([1.0, 0.0]), weight=np.array([3.0, 1.0]))
    assert weighted(np.array([1.0, 2.0])) == pytest.approx([0.75, 0.75])


def test_pav_is_monotone_and_keeps_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * x))).astype(float)
    fitted = fit_isotonic(x, y)(x)
    order = np.argsort(x)
    assert np.all(np.diff(fitted[order]) >= 0)
    assert fitted.mean() == pytest.approx(y.mean())  # PAV preserves each block's mean, so the total too


def test_platt_recovers_the_rates_of_a_saturated_design():
    # two inputs, 50% and 80% positive: the logistic MLE goes through both rates exactly
    x = np.array([0.0] * 10 + [1.0] * 10)[:, None]
    y = np.array([1] * 5 + [0] * 5 + [1] * 8 + [0] * 2, dtype=float)
    platt = fit_platt(x, y, ridge=1e-9)
    assert platt(np.array([[0.0], [1.0]])) == pytest.approx([0.5, 0.8], abs=1e-6)


def test_platt_ridge_keeps_separable_data_finite():
    x = np.array([-1.0, -0.5, 0.5, 1.0])[:, None]
    y = np.array([0.0, 0.0, 1.0, 1.0])
    platt = fit_platt(x, y, ridge=1.0)
    assert np.all(np.isfinite(platt.weights)) and platt.weights[0] > 0


# -- ECE and the reliability table -------------------------------------------------------------------------------
def test_ece_by_hand():
    conf = [0.05, 0.15, 0.15, 0.95]
    correct = [False, True, False, True]
    # bins: 0.0-0.1 {0.05 vs 0}, 0.1-0.2 {0.15 vs 0.5}, 0.9-1.0 {0.95 vs 1}: (0.05 + 2 x 0.35 + 0.05) / 4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.2)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error([0.7] * 10, [True] * 7 + [False] * 3) == pytest.approx(0.0)
    assert reliability_table(conf, correct) == [
        {"bin": "0.0-0.1", "n": 1, "confidence": 0.05, "accuracy": 0.0},
        {"bin": "0.1-0.2", "n": 2, "confidence": 0.15, "accuracy": 0.5},
        {"bin": "0.9-1.0", "n": 1, "confidence": 0.95, "accuracy": 1.0},
    ]


# -- features ----------------------------------------------------------------------------------------------------
def judgments(rows: list[tuple]) -> pl.DataFrame:
    """(pair, order, sample, side, confidence, error, drop_reason, majority) of persona p1."""
    names = ["pair_id", "order", "sample", "side", "confidence", "error", "drop_reason", "majority"]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.with_columns(persona_id=pl.lit("p1"), sample=pl.col("sample").cast(pl.Int64))


def test_features_count_dropped_and_debias_the_orders():
    frame = judgments(
        [
            ("x", "AB", 0, "a", 0.8, None, None, "a"),
            ("x", "BA", 0, "a", 0.6, None, None, "a"),
            ("x", "AB", 1, "a", 0.9, None, "swap_inconsistent", "a"),
            ("x", "BA", 1, "b", 0.7, None, "swap_inconsistent", "a"),
            ("x", "AB", 2, None, None, "unparseable: x", "invalid", "a"),
            ("x", "BA", 2, "b", 0.9, None, "swap_unverifiable", "a"),
            ("y", "AB", 0, "b", 0.7, None, "low_agreement", None),  # no kept judgment: no row
        ]
    )
    f = pair_features(frame).row(0, named=True)
    assert pair_features(frame).height == 1 and f["chosen_side"] == "a"
    assert f["judge_confidence"] == pytest.approx(0.7)  # kept verdicts only
    assert f["sample_agreement"] == pytest.approx(3 / 5)  # every valid verdict
    assert f["swap_agreement"] == pytest.approx(1 / 2)  # samples 0 and 1 were judged in both orders
    ab = (logit(0.8) + logit(0.9)) / 2
    ba = (logit(0.6) + logit(0.3) + logit(0.1)) / 3  # a verdict for b at 0.7 gives a 0.3
    assert f["debiased_logodds"] == pytest.approx((ab + ba) / 2)


def test_a_pure_position_bias_cancels():
    # logit P(a) = x + bias when a is shown first, x - bias when second: the debiased log-odds are x
    x, bias = 0.4, 1.5
    p_ab, p_ba = 1 / (1 + math.exp(-(x + bias))), 1 / (1 + math.exp(-(x - bias)))
    frame = judgments([("x", "AB", 0, "a", p_ab, None, None, "a"), ("x", "BA", 0, "a", p_ba, None, None, "a")])
    assert pair_features(frame)["debiased_logodds"][0] == pytest.approx(x)


def _features(**columns: list[float]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"debiased_logodds": [1.0] * n, "swap_agreement": [1.0] * n, "sample_agreement": [1.0] * n}
    return pl.DataFrame(base | {"judge_confidence": [0.8] * n} | columns)


@pytest.mark.parametrize("feature", FEATURES)
def test_shipped_calibrator_never_lowers_confidence_for_more_evidence(feature):
    grid = np.linspace(-4, 4, 81) if feature == "debiased_logodds" else np.linspace(0.01, 0.99, 81)
    for logodds in (-0.05, 0.0, 0.05, 2.0):  # around the calibrator's step and well past it
        features = _features(debiased_logodds=[logodds] * 81).with_columns(pl.Series(feature, grid))
        conf = calibrate(features).to_numpy()
        assert np.all(np.diff(conf) >= 0), (feature, logodds)
        assert np.all((conf >= 0.01) & (conf <= 0.99))


def test_calibration_is_deterministic_and_survives_its_file():
    features = _features(debiased_logodds=np.linspace(-1, 1, 41).tolist())
    first = calibrate(features)
    assert first.equals(calibrate(features))
    again = Calibrator.from_json(shipped().to_json())
    assert first.equals(calibrate(features, again))
    assert again.to_json() == shipped().to_json()


def test_fitting_is_deterministic_and_calibrated_in_sample():
    rows = simulated_rows(["judge.noise=0.2", "judge.position_bias=1.0", "filters.min_confidence=0"], personas=20)
    a, b = fit(rows, {}), fit(rows, {})
    assert a.to_json() == b.to_json()
    assert a.fitted_on["ece"] <= 0.02 < a.fitted_on["ece_judge"]


def test_shipped_calibrator_says_what_it_was_fitted_on():
    fitted = shipped().fitted_on
    assert fitted["rows"] > 100_000 and 0.2 in fitted["noise"] and 1.0 in fitted["position_bias"]
    assert fitted["ece"] <= 0.05 and fitted["ece_judge"] > fitted["ece"]


# -- simulated builds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "bound", "halves_raw"),
    [
        # the benchmark's noisy setting, with the default filters, at 1 and 3 samples: the ECE <= 0.05
        (("judge.noise=0.2", "judge.position_bias=1.0", "judge.samples=1"), 0.05, True),
        (("judge.noise=0.2", "judge.position_bias=1.0", "judge.samples=3"), 0.05, True),
        # ... without the agreement and confidence minimums: more doubtful rows kept, a looser fit
        (
            (
                "judge.noise=0.2",
                "judge.position_bias=1.0",
                "judge.samples=3",
                "filters.min_confidence=0",
                "filters.min_agreement=0",
            ),
            0.08,
            True,
        ),
        (("judge.noise=0.05", "judge.position_bias=0.4", "judge.samples=1", "filters.min_confidence=0"), 0.05, True),
        # settings the calibrator was not fitted on and no filter at all: no better than the judge's own there
        (
            (
                "judge.noise=0.3",
                "judge.position_bias=1.5",
                "judge.temperature=1.0",
                "judge.samples=3",
                "filters.min_confidence=0",
                "filters.min_agreement=0",
                "filters.swap_consistency=false",
            ),
            0.10,
            False,
        ),
    ],
)
def test_calibrated_confidence_against_the_simulators_truth(setting, bound, halves_raw):
    rows = simulated_rows(list(setting), personas=40, seed=5)  # another seed than the fit's
    correct = rows["correct"].to_numpy()
    raw = expected_calibration_error(rows["judge_confidence"].to_numpy(), correct)
    calibrated = expected_calibration_error(calibrate(rows).to_numpy(), correct)
    assert calibrated <= bound, (calibrated, raw)
    if halves_raw:
        assert raw >= 0.05 and calibrated < raw / 2, (calibrated, raw)


def test_a_build_reports_calibration_in_summary_and_card(tiny_config, tmp_path):
    config = load_config(tiny_config, ["judge.noise=0.2", "judge.position_bias=1.0", "filters.min_confidence=0"])
    out = tmp_path / "out"
    summary = run_without_prefect(pipeline.plan(config, out))
    prefs = pl.read_parquet(out / "data" / "preferences")
    assert prefs["confidence"].is_between(0.01, 0.99).all()
    assert not prefs["confidence"].equals(prefs["judge_confidence"])
    report = summary["calibration"]
    judge = make_judge(config.judge, config.seed)
    assert report == calibration_report(out, judge.info, calibrator_for(judge.info))
    assert report["confidence_kind"] == "simulator probability"
    assert report["calibrator"]["conditioned"] and report["calibrator"]["file"] is None  # fitted for its settings
    assert report["truth"] == "matches_ground_truth" and report["rows"] == prefs.height
    assert report["ece"] <= 0.05 < report["ece_judge"]
    assert sum(b["n"] for b in report["reliability"]) == prefs.height
    card = (out / "README.md").read_text()
    assert "## Calibration" in card and f"ECE **{report['ece']}**" in card
    assert "`judge_confidence` |" in card  # the column is documented
    assert "fitted for this judge's own settings" in card and "noise 0.2" in card


def write_preferences(out: Path, frame: pl.DataFrame) -> None:
    folder = out / "data" / "preferences"
    folder.mkdir(parents=True)
    frame.write_parquet(folder / "train-00000-of-00001.parquet")


def test_report_falls_back_to_source_labels_then_to_none(tmp_path):
    labelled = pl.DataFrame(
        {
            "confidence": [0.9, 0.9, 0.2],
            "judge_confidence": [0.6, 0.6, 0.6],
            "matches_ground_truth": pl.Series([None, None, None], dtype=pl.Boolean),
            "source_label_agrees": [True, False, None],
        }
    )
    write_preferences(tmp_path / "a", labelled)
    report = calibration_report(tmp_path / "a")
    assert report["truth"] == "source_label_agrees" and report["rows"] == 2
    assert report["ece"] == pytest.approx(0.4) and report["ece_judge"] == pytest.approx(0.1)
    write_preferences(tmp_path / "b", labelled.with_columns(pl.lit(None, pl.Boolean).alias("source_label_agrees")))
    report = calibration_report(tmp_path / "b")
    assert report["truth"] is None and "ece" not in report


def test_a_refit_calibrator_makes_another_build(tmp_path, monkeypatch):
    """Shards keep the confidence they were written with: a refit calibrator must rebuild, not mix, a dataset."""
    from polypref.build import fingerprint
    from polypref.config import load_config
    from polypref.population import load_spec

    config = load_config()
    spec = load_spec(config.population.spec)
    shipped_file = fingerprint.calibrator_file()
    before = fingerprint.build_fingerprint(config, spec)
    refit = tmp_path / "simulated.json"
    refit.write_text(shipped_file.read_text())  # a copy, same bytes: the same build
    monkeypatch.setattr(fingerprint, "calibrator_file", lambda: refit)
    assert fingerprint.build_fingerprint(config, spec) == before
    refit.write_text(shipped_file.read_text() + " ")
    assert fingerprint.build_fingerprint(config, spec) != before
    assert "analysis/calibration.py" in fingerprint.DATA_CODE
