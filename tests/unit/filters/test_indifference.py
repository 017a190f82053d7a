"""Indifference is an outcome: the simulator and LLM judges may say tie, tie votes leave preferences as
``indifferent``, and every accuracy figure scores a pick for an indifferent persona as wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from polypref import pipeline
from polypref.analysis.calibration import GAP_MIN_ROWS, largest_gap, shipped
from polypref.build.report import shard_stats
from polypref.config import FiltersConfig, load_config
from polypref.dataset.tables import RunMeta, judgments_frame
from polypref.filters import apply_filters, filters_from_config, reason_counts
from polypref.items import load_items, make_pairs
from polypref.judges import collect_verdicts, make_judge
from polypref.judges.llm import LLMJudgeConfig
from polypref.judges.simulated import SimulatedJudgeConfig
from polypref.llms.base import request_schema
from polypref.pipeline.calibration import calibrator_for
from polypref.population import load_spec, sample_population
from polypref.prompts import template
from polypref.records import UnitBatch
from tests.conftest import run_without_prefect


@pytest.fixture(scope="module")
def batch() -> UnitBatch:
    spec = load_spec("gss_spending")
    personas = sample_population(spec, 300, "proportional", seed=3).personas
    return UnitBatch.persona_major(personas, make_pairs(load_items("gss_spending", spec)), samples=1)


def _judged(batch: UnitBatch, **judge: float) -> pl.DataFrame:
    simulated = make_judge(SimulatedJudgeConfig(**judge), seed=1)
    meta = RunMeta("r", datetime(2026, 1, 1, tzinfo=UTC), simulated.info)
    return judgments_frame(batch, collect_verdicts(simulated, batch), meta)


def test_an_indifferent_persona_says_tie_except_in_a_lapse(batch):
    frame = _judged(batch, noise=0.2).filter(pl.col("error").is_null())
    indifferent = frame.filter(pl.col("true_side") == "tie")
    # gss_spending's 3-point scale: an "about right" persona is exactly between "too little" and "too much"
    assert indifferent.height > 1000
    said_tie = float((indifferent["choice"] == "tie").mean())
    assert said_tie == pytest.approx(0.8, abs=0.02)  # 1 - noise
    assert frame.filter(pl.col("true_side") != "tie")["choice"].is_in(["A", "B"]).all()  # a lean is never a tie


def test_tie_margin_zero_forces_a_pick(batch):
    frame = _judged(batch, tie_margin=0.0).filter(pl.col("error").is_null())
    assert (frame["choice"] != "tie").all()
    assert (frame["true_side"] == "tie").sum() > 1000  # the truth still knows the persona is indifferent


def test_a_wider_margin_makes_near_equidistant_personas_indifferent():
    """The margin is on the distance gap: a persona nearly between the stances is indifferent too."""
    from polypref.judges.simulated import SimulatedJudge

    assert SimulatedJudgeConfig().tie_margin > 0  # on by default
    narrow, wide = (
        SimulatedJudge(SimulatedJudgeConfig(tie_margin=0.05), 0),
        SimulatedJudge(SimulatedJudgeConfig(tie_margin=0.6), 0),
    )
    spec = load_spec("gss_spending")
    personas = sample_population(spec, 50, "proportional", seed=0).personas
    units = UnitBatch.persona_major(personas, make_pairs(load_items("gss_spending", spec)), samples=1)
    ties = [
        int((pl.concat(list(j.judge(units)))["true_choice"] == "tie").sum())
        for j in (narrow, wide)  # a half-scale gap (0.5) falls inside 0.6
    ]
    assert ties[1] > ties[0] > 0


def test_tie_votes_leave_preferences_as_indifferent_before_any_other_pair_filter(batch):
    frame = _judged(batch, noise=0.0)
    filtered = apply_filters(frame, filters_from_config(FiltersConfig(min_agreement=0.75, min_confidence=0.99)))
    indifferent = filtered.filter(pl.col("drop_reason") == "indifferent")
    assert indifferent.height == filtered.filter(pl.col("true_side") == "tie").height  # no lapse: every one
    assert (indifferent["choice"] == "tie").all()
    # their stated confidence is under 0.99, yet they are indifferent, not low_confidence
    assert indifferent["confidence"].mean() < 0.99
    assert "tie" not in reason_counts(filtered)
    kept = filtered.filter(pl.col("drop_reason").is_null())
    assert (kept["true_side"] != "tie").all()


def test_ground_truth_scores_a_pick_for_an_indifferent_persona_as_wrong(batch):
    """Every accuracy figure uses one rule: a verdict is right when it names the persona's true outcome."""
    frame = apply_filters(_judged(batch, noise=0.2), filters_from_config(FiltersConfig()))
    preferences = pl.DataFrame(schema={"source_label_agrees": pl.Boolean, "persona_group": pl.String})
    stats = shard_stats(0, frame, preferences)
    valid = frame.filter(pl.col("error").is_null())
    indifferent = valid.filter(pl.col("true_side") == "tie")
    assert stats.truth_valid == valid.height  # indifferent personas are scored, not left out
    named_tie = int((indifferent["side"] == "tie").sum())
    leaning = valid.filter(pl.col("true_side") != "tie")
    assert stats.truth_correct == named_tie + int((leaning["side"] == leaning["true_side"]).sum())
    picks = indifferent.filter(pl.col("side") != "tie").height
    assert picks > 0 and stats.truth_valid - stats.truth_correct >= picks  # each pick counts as wrong


def test_position_bias_is_measured_on_verdicts_that_name_a_response(batch):
    """A tie names no position: counted among the verdicts, ties would pull a biased judge's first-position rate
    toward 0.5 ("no bias")."""
    frame = apply_filters(_judged(batch, position_bias=0.8), filters_from_config(FiltersConfig()))
    preferences = pl.DataFrame(schema={"source_label_agrees": pl.Boolean, "persona_group": pl.String})
    stats = shard_stats(0, frame, preferences)
    named = frame.filter(pl.col("error").is_null() & pl.col("winner_id").is_not_null())
    assert 0 < stats.named == named.height < stats.valid  # some verdicts are ties
    assert stats.first_position_valid == int((named["winner_id"] == named["first_response_id"]).sum())
    assert stats.first_position_valid / stats.named > 0.5 + 0.02 > stats.first_position_valid / stats.valid


def test_llm_judges_may_say_tie_by_default():
    config = LLMJudgeConfig(model="m")
    assert config.allow_ties
    assert "tie" in request_schema(config.allow_ties)["properties"]["choice"]["enum"]
    system = template("judge_system.j2").render(persona="A voter.", mode="verdict", allow_ties=True)
    assert '"tie"' in system and "no preference" in system
    forced = template("judge_system.j2").render(persona="A voter.", mode="verdict", allow_ties=False)
    assert "tie" not in forced


def test_the_simulators_calibrator_is_fitted_for_its_settings():
    default = make_judge(SimulatedJudgeConfig(), seed=0).info
    other = make_judge(SimulatedJudgeConfig(noise=0.3), seed=0).info
    fitted = calibrator_for(default)
    assert fitted is calibrator_for(make_judge(SimulatedJudgeConfig(), seed=9).info)  # settings, not seed
    assert fitted.fitted_on["settings"] == SimulatedJudgeConfig().model_dump(exclude={"backend"})
    assert fitted.to_json() != calibrator_for(other).to_json() != shipped().to_json()


def test_shard_threads_asking_at_once_fit_the_simulators_calibrator_once():
    import threading

    from polypref.pipeline import calibration

    settings = make_judge(SimulatedJudgeConfig(noise=0.21), seed=0).info  # settings no other test fits
    before = calibration._fitted_for.cache_info().misses
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(calibrator_for(settings))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calibration._fitted_for.cache_info().misses == before + 1  # one fit (about a second), not one per thread
    assert got[0] is got[1]


def test_largest_gap_reads_the_worst_bin():
    table = [
        {"bin": "0.5-0.6", "n": 10, "confidence": 0.55, "accuracy": 0.1},
        {"bin": "0.8-0.9", "n": 60, "confidence": 0.85, "accuracy": 0.7},
        {"bin": "0.9-1.0", "n": 900, "confidence": 0.95, "accuracy": 0.96},
    ]
    assert largest_gap(table)["bin"] == "0.5-0.6" and largest_gap(table)["gap"] == pytest.approx(-0.45)
    assert largest_gap(table, min_rows=GAP_MIN_ROWS)["gap"] == pytest.approx(-0.15)
    assert largest_gap([], min_rows=1) is None


def test_the_default_build_drops_indifference_and_is_calibrated_where_it_counts(tmp_path):
    """The default simulator is noisy (raw verdicts < 0.95 right where the persona leans), the filters keep
    almost only right labels, no kept label is a coin flip, and the card shows the reliability table's worst
    bin: ECE <= 0.03, no bin of >= 50 preferences off by more than 0.10."""
    config = load_config(None, ["population.size=120"])
    out = tmp_path / "out"
    summary = run_without_prefect(pipeline.plan(config, out))
    judgments = pl.read_parquet(out / "data" / "judgments" / "*.parquet")
    valid = judgments.filter(pl.col("error").is_null() & pl.col("true_choice").is_in(["A", "B"]))
    assert float((valid["choice"] == valid["true_choice"]).mean()) < 0.95  # both shown-order letters
    assert summary["reasons"]["indifferent"] > 0
    prefs = pl.read_parquet(out / "data" / "preferences" / "*.parquet")
    assert float(prefs["matches_ground_truth"].mean()) >= 0.97
    truth = judgments.group_by("persona_id", "pair_id").agg(indifferent=(pl.col("true_choice") == "tie").all())
    published = prefs.join(truth, on=["persona_id", "pair_id"])
    assert published["indifferent"].mean() < 0.002  # both orders must lapse the same way
    assert not published.filter("indifferent")["matches_ground_truth"].any()
    cal = summary["calibration"]
    assert cal["calibrator"]["conditioned"] and cal["ece"] <= 0.03
    assert cal["largest_gap_50"] is None or abs(cal["largest_gap_50"]["gap"]) <= 0.10
    card = (out / "README.md").read_text()
    assert "dropped as `indifferent`" in card and "largest gap between a bin's accuracy" in card
    assert "tie for a persona indifferent between the two" in card
