"""Adaptive self-consistency (filters/sequential.py): the stopping rule on crafted votes, rounds within the
budget, determinism, and a shard interrupted mid-way that resumes asking only for the units it lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polypref import pipeline
from polypref.config import FiltersConfig, load_config
from polypref.filters.sequential import RULE_COLUMNS, SequentialRule, judge_in_rounds
from polypref.judges import make_judge
from polypref.judges.base import NO_ANSWER, VERDICT_COLUMNS
from tests.judges import WrapperJudge
from tests.unit.pipeline.test_pipeline import read

NOISY = ["judge.samples=3", "judge.noise=0.2", "judge.position_bias=1.0"]
ADAPTIVE = [*NOISY, "adaptive.enabled=true"]
NOTHING = pl.DataFrame(schema=VERDICT_COLUMNS)  # an empty judgment store


def votes(*samples: tuple[str | None, str | None], confidence: float = 0.9, pair: int = 0) -> pl.DataFrame:
    """Judged units of one (persona, pair): per sample, the side named when shown AB and when shown BA ("a",
    "b", "tie", None for an invalid verdict, "?" for a unit that got no answer)."""
    shown = {("AB", "a"): "A", ("AB", "b"): "B", ("BA", "a"): "B", ("BA", "b"): "A"}
    rows = []
    for s, sides in enumerate(samples):
        for order, side in zip(("AB", "BA"), sides, strict=True):
            error = None if side not in (None, "?") else ("invalid: unparseable" if side is None else f"{NO_ANSWER}: x")
            choice = None if error else ("tie" if side == "tie" else shown[order, side])
            rows.append((0, pair, order, s, choice, None if error else confidence, error, False))
    return pl.DataFrame(rows, schema=RULE_COLUMNS, orient="row")


def again(judged: pl.DataFrame, asked: int, budget: int = 3, **settings: object) -> bool:
    rule = SequentialRule(FiltersConfig(), budget, **settings)  # type: ignore[arg-type]
    decided = rule.decide(judged, asked)
    assert decided.height == judged.select("persona_id", "pair_id").unique().height
    return bool(decided["again"][0])


def test_a_swap_consistent_confident_sample_settles_a_pair():
    assert not again(votes(("a", "a")), asked=1)
    assert not again(votes(("b", "b")), asked=1)


def test_an_undecided_pair_is_asked_again():
    assert again(votes(("a", "b")), asked=1)  # swap-inconsistent: the slot, not the content, chose
    assert again(votes(("a", None)), asked=1)  # unverifiable
    assert again(votes(("a", "a"), confidence=0.5), asked=1)  # the confidence filter would drop it now
    assert again(votes(("tie", "tie")), asked=1, budget=4)  # a tie is no preference; 3 more samples can make one


def test_a_pair_the_filters_must_drop_stops_early():
    # 1-1 after two samples: even a third for "a" leaves 4 of 6 votes, below min_agreement 0.75
    assert not again(votes(("a", "a"), ("b", "b")), asked=2)
    # with a budget of 4 it still can (6 of 8 votes), and so it is asked again
    assert again(votes(("a", "a"), ("b", "b")), asked=2, budget=4)
    assert not again(votes(("tie", "tie")), asked=1)  # at best 4 of 6 votes for a response
    # a low mean confidence that the remaining budget cannot lift past min_confidence 0.6
    assert not again(votes(("a", "a"), ("a", "a"), confidence=0.1), asked=2)
    assert not again(votes(("a", "a"), ("a", "a"), confidence=0.3), asked=2)  # at best (4 * 0.3 + 2) / 6 < 0.6
    assert again(votes(("a", "a"), ("a", "a"), confidence=0.45), asked=2)  # (4 * 0.45 + 2) / 6 >= 0.6
    # a pair whose two responses are one text never yields a vote
    same = votes(("a", "b")).with_columns(same_text=pl.lit(True))
    assert not again(same, asked=1)


def test_an_unsure_sample_gets_another_before_it_may_stop():
    # kept by the filters (mean confidence 0.65 >= min_confidence 0.6) but not sure enough to stop on
    assert again(votes(("a", "a"), confidence=0.65), asked=1, stop_confidence=0.7)
    assert not again(votes(("a", "a"), confidence=0.65), asked=1, stop_confidence=0.6)
    assert not again(votes(("a", "a"), confidence=0.75), asked=1, stop_confidence=0.7)
    assert again(votes(("a", "a"), ("a", "a"), confidence=0.65), asked=2, stop_confidence=0.7)  # the budget left
    assert not again(votes(("a", "a"), ("a", "a"), confidence=0.65), asked=2, budget=2, stop_confidence=0.7)


def test_the_budget_and_unanswered_units_stop_a_pair():
    assert not again(votes(("a", "b"), ("a", "b"), ("a", "b")), asked=3)
    assert not again(votes(("a", "b")), asked=1, budget=1)
    # a unit without an answer: a rerun asks for it and decides then
    assert not again(votes(("a", "?")), asked=1)


def test_min_lead_and_min_samples():
    assert again(votes(("a", "a")), asked=1, min_lead=2)
    assert not again(votes(("a", "a"), ("a", "a")), asked=2, min_lead=2)
    assert again(votes(("a", "a"), ("a", "b")), asked=2, min_lead=2)  # lead 1; one more can make it 2
    assert not again(votes(("a", "b"), ("a", "b")), asked=2, min_lead=2)  # lead 0: one sample cannot reach 2
    assert again(votes(("a", "a")), asked=1, min_samples=2)
    assert not again(votes(("a", "a"), ("a", "a")), asked=2, min_samples=2)


def test_each_pair_is_decided_on_its_own_votes():
    judged = pl.concat([votes(("a", "a"), pair=0), votes(("a", "b"), pair=1), votes(("b", "b"), pair=2)])
    rule = SequentialRule(FiltersConfig(), budget=3)
    assert rule.ask_again(judged, 1)["pair_id"].to_list() == [1]


def _plan(tiny_config: Path, out: Path, settings: list[str]):
    return pipeline.plan(load_config(tiny_config, settings), out)


def _judge(plan, **kwargs: object) -> WrapperJudge:
    return WrapperJudge(make_judge(plan.config.judge, plan.config.seed), **kwargs)  # type: ignore[arg-type]


def test_rounds_stay_within_the_budget_and_ask_whole_samples(tiny_config, tmp_path):
    plan = _plan(tiny_config, tmp_path / "out", ADAPTIVE)
    batch = plan.batch(0)
    judge = _judge(plan)
    judged = judge_in_rounds(
        judge,
        batch,
        NOTHING,
        SequentialRule.from_config(plan.config.adaptive, plan.config.filters, plan.config.judge.samples),
    )
    assert judge.asked == len(judged.rows) == judged.verdicts.height < len(batch)
    assert judged.verdicts["unit"].to_list() == list(range(len(judged.rows)))
    taken = batch.take(judged.rows)
    units = pl.DataFrame({"p": taken.persona_idx, "q": taken.pair_idx, "o": taken.order, "s": taken.sample})
    per_pair = units.group_by("p", "q").agg(pl.len(), pl.col("s").max(), pl.col("o").sum())
    everyone = len(batch.personas) * len(batch.pairs)
    assert per_pair.height == everyone  # sample 0 of every (persona, pair)
    assert (per_pair["len"] == 2 * (per_pair["s"] + 1)).all()  # samples 0..n-1, each in both orders
    assert (per_pair["o"] == per_pair["s"] + 1).all()
    assert set(per_pair["len"].unique()) <= {2, 4, 6} and per_pair["len"].max() == 6
    # fixed sampling judges every unit, in one round
    fixed = _judge(plan)
    assert judge_in_rounds(fixed, batch, NOTHING, None).rows.tolist() == list(range(len(batch)))
    assert fixed.asked == len(batch)


def test_adaptive_shards_are_deterministic_and_cheaper_than_fixed(tiny_config, tmp_path):
    def shard(out: Path, settings: list[str]) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        plan = _plan(tiny_config, out, settings)
        run = pipeline.prepare_output(plan)
        judge = _judge(plan)
        report = pipeline.run_shard(plan, run, 0, judge)
        assert report.units == judge.asked and report.planned == len(plan.batch(0))
        keys = ["persona_id", "pair_id", "order", "sample"]
        return read(out, "judgments").sort(keys), read(out, "preferences").sort(keys[:2]), judge.asked

    first, first_prefs, asked = shard(tmp_path / "a", ADAPTIVE)
    second, second_prefs, _ = shard(tmp_path / "b", ADAPTIVE)
    assert first.equals(second)  # read() leaves out the run's id and time
    assert first_prefs.equals(second_prefs)
    _, _, fixed_asked = shard(tmp_path / "c", NOISY)
    assert asked < 0.7 * fixed_asked
    assert first_prefs["n_judgments"].min() >= 2 and first_prefs["n_judgments"].max() <= 6


def test_an_interrupted_adaptive_shard_resumes_asking_only_for_missing_units(tiny_config, tmp_path):
    clean_plan = _plan(tiny_config, tmp_path / "clean", ADAPTIVE)
    clean_run = pipeline.prepare_output(clean_plan)
    clean = _judge(clean_plan)
    pipeline.run_shard(clean_plan, clean_run, 0, clean)

    plan = _plan(tiny_config, tmp_path / "out", ADAPTIVE)
    run = pipeline.prepare_output(plan)
    # killed two micro-batches before the end: in a later round, after round 0 was saved
    crashing = _judge(plan, crash_after=clean.frames - 2)
    with pytest.raises(RuntimeError, match="worker killed"):
        pipeline.run_shard(plan, run, 0, crashing)
    saved = plan.store.count()
    assert len(plan.batch(0)) // 3 < saved < clean.asked

    resumed = _judge(plan)
    report = pipeline.run_shard(plan, run, 0, resumed)
    assert resumed.asked == clean.asked - saved  # nothing asked twice, nothing missing
    assert report.reused == saved and report.units == clean.asked
    keys = ["persona_id", "pair_id", "order", "sample"]
    assert read(tmp_path / "out", "judgments").sort(keys).equals(read(tmp_path / "clean", "judgments").sort(keys))
    # and a second rerun finds the shard done: no request at all
    idle = _judge(plan)
    pipeline.run_shard(plan, run, 0, idle)
    assert idle.asked == 0


def test_a_fixed_build_stored_first_serves_an_adaptive_one(tiny_config, tmp_path):
    out = tmp_path / "out"
    plan = _plan(tiny_config, out, NOISY)
    run = pipeline.prepare_output(plan)
    pipeline.run_shard(plan, run, 0, _judge(plan))
    plan = _plan(tiny_config, out, ADAPTIVE)  # another fingerprint, the same judge key: the store serves it
    assert plan.judge_key == _plan(tiny_config, out, NOISY).judge_key
    run = pipeline.prepare_output(plan)
    judge = _judge(plan)
    report = pipeline.run_shard(plan, run, 0, judge)
    assert judge.asked == 0 and report.reused == report.units < report.planned


def test_adaptive_needs_a_budget():
    from polypref.errors import ConfigError

    with pytest.raises(ConfigError, match=r"judge\.samples"):
        load_config(None, ["adaptive.enabled=true"])
    with pytest.raises(ConfigError, match="min_samples"):
        load_config(None, ["adaptive.enabled=true", "judge.samples=2", "adaptive.min_samples=3"])
    assert load_config(None, ["adaptive.enabled=true", "judge.samples=2"]).adaptive.enabled
    np.testing.assert_equal(load_config(None).adaptive.enabled, False)
