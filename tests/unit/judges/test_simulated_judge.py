from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from polypref.config import FiltersConfig
from polypref.dataset.tables import RunMeta, judgments_frame
from polypref.filters import apply_filters, filters_from_config
from polypref.items import load_items, make_pairs
from polypref.judges import collect_verdicts, make_judge
from polypref.judges.simulated import SimulatedJudgeConfig
from polypref.population import load_spec, sample_population
from polypref.records import VERDICT, UnitBatch


@pytest.fixture(scope="module")
def batch() -> UnitBatch:
    spec = load_spec("gss_spending")
    personas = sample_population(spec, 500, "proportional", seed=0).personas
    return UnitBatch.persona_major(personas, make_pairs(load_items("gss_spending", spec)), samples=1)


def _judged(batch: UnitBatch, swap: bool = True, **judge: float) -> pl.DataFrame:
    simulated = make_judge(SimulatedJudgeConfig(**judge), seed=1)
    meta = RunMeta("r", datetime(2026, 1, 1, tzinfo=UTC), simulated.info)
    frame = judgments_frame(batch, collect_verdicts(simulated, batch), meta)
    filters = FiltersConfig(swap_consistency=swap, min_agreement=0, min_confidence=0)
    return apply_filters(frame, filters_from_config(filters))


def _first_rate(frame: pl.DataFrame) -> float:
    return float((frame["winner_id"] == frame["first_response_id"]).mean())


def _accuracy(frame: pl.DataFrame) -> float:
    scored = frame.filter(pl.col("true_side") != "tie")
    return float((scored["side"] == scored["true_side"]).mean())


def test_position_bias_shows_up_as_configured(batch):
    rates = [_first_rate(_judged(batch, swap=False, position_bias=b, noise=0.0)) for b in (0.0, 0.5, 1.5)]
    assert rates[0] == pytest.approx(0.5, abs=0.01)  # 54k verdicts: the standard error is 0.0022
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] > 0.55


def test_swap_filter_removes_position_bias(batch):
    frame = _judged(batch, swap=True, position_bias=1.5, noise=0.0)
    kept = frame.filter(pl.col("drop_reason").is_null())
    assert _first_rate(frame.filter(pl.col("error").is_null())) > 0.55
    assert _first_rate(kept) == 0.5  # each kept pair names the same response once in each slot
    assert _accuracy(kept) > _accuracy(frame) + 0.05


def test_noise_is_a_coin_flip(batch):
    assert _accuracy(_judged(batch, swap=False, noise=1.0, position_bias=0.0)) == pytest.approx(0.5, abs=0.01)
    assert _accuracy(_judged(batch, swap=False, noise=0.0, position_bias=0.0, temperature=0.01)) == 1.0


def test_verdicts_meet_the_llm_contract(batch):
    simulated = make_judge(SimulatedJudgeConfig(), seed=1)
    verdicts = collect_verdicts(simulated, batch)
    assert verdicts.height == len(batch)
    for row in verdicts.head(2000).iter_rows(named=True):
        VERDICT.validate_python({k: row[k] for k in ("choice", "strength", "confidence", "rationale")})
    assert simulated.info.simulated and simulated.info.backend == "simulated"


def test_same_seed_same_verdicts_other_seed_differs(batch):
    one = collect_verdicts(make_judge(SimulatedJudgeConfig(), seed=1), batch)
    assert one.equals(collect_verdicts(make_judge(SimulatedJudgeConfig(), seed=1), batch))
    assert not one.equals(collect_verdicts(make_judge(SimulatedJudgeConfig(), seed=2), batch))


def test_unanswered_topic_is_an_invalid_verdict_not_a_guess(tiny):
    spec = load_spec(str(tiny["spec"]))  # the tiny spec marks skipped t2 answers instead of dropping them
    personas = [p for p in sample_population(spec, 2000, "proportional", seed=0).personas if p.attitudes["t2"] is None]
    assert personas
    pairs = make_pairs(load_items(str(tiny["items"]), spec))
    unanswered = UnitBatch.persona_major(tuple(personas[:3]), pairs, samples=1)
    verdicts = collect_verdicts(make_judge(SimulatedJudgeConfig(), seed=0), unanswered)
    t2 = pl.Series([pairs[i].item.topic == "t2" for i in unanswered.pair_idx])
    assert verdicts.filter(t2)["choice"].null_count() == int(t2.sum())
    assert verdicts.filter(t2)["error"].str.contains("no attitude").all()
    assert verdicts.filter(~t2)["error"].null_count() == int((~t2).sum())
