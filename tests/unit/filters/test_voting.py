"""The vote behind each preference: whatever the verdicts, a preference row is derivable from its kept judgments."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polypref.analysis.calibration import shipped
from polypref.config import FiltersConfig
from polypref.dataset.tables import RunMeta, judgments_frame, preferences_frame
from polypref.filters import apply_filters, filters_from_config
from polypref.items import load_items, make_pairs
from polypref.judges import VERDICT_COLUMNS, JudgeInfo
from polypref.population import load_spec, sample_population
from polypref.records import UnitBatch
from tests.conftest import items_records, spec_dict, survey_table

META = RunMeta("run", datetime(2026, 1, 1, tzinfo=UTC), JudgeInfo("scripted", "crafted", simulated=False))
PERSONAS, PAIRS = 2, 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    folder: Path = tmp_path_factory.mktemp("voting")
    survey_table().write_parquet(folder / "survey.parquet")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec_dict()))
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items_records()))
    spec = load_spec(str(folder / "tiny.yaml"))
    personas = sample_population(spec, PERSONAS, "proportional", seed=0).personas
    pairs = make_pairs(load_items(str(folder / "items.jsonl"), spec))[:PAIRS]
    return personas, pairs


def verdicts(choices: list[str | None], confidences: list[float]) -> pl.DataFrame:
    n = len(choices)
    return pl.DataFrame(
        {
            "unit": range(n),
            "choice": choices,
            "strength": [3 if c else None for c in choices],
            "confidence": [conf if c else None for c, conf in zip(choices, confidences, strict=True)],
            "rationale": ["r" if c else None for c in choices],
            "raw": [None] * n,
            "error": [None if c else "unparseable: crafted" for c in choices],
            "true_choice": [None] * n,
            "prompt_tokens": [None] * n,
            "completion_tokens": [None] * n,
            "attempts": [1] * n,
            "response_format": [None] * n,
        },
        schema=VERDICT_COLUMNS,
    )


def run(inputs: tuple, samples: int, choices, confidences, filters: FiltersConfig) -> tuple:
    personas, pairs = inputs
    batch = UnitBatch.persona_major(personas, pairs, samples)
    frame = apply_filters(judgments_frame(batch, verdicts(choices, confidences), META), filters_from_config(filters))
    return batch, frame, preferences_frame(frame, batch, META, shipped())


@st.composite
def patterns(draw: st.DrawFn) -> tuple:
    samples = draw(st.integers(1, 4))
    n = PERSONAS * PAIRS * 2 * samples
    choices = draw(st.lists(st.sampled_from(["A", "B", "tie", None]), min_size=n, max_size=n))
    confidences = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    filters = FiltersConfig(
        swap_consistency=draw(st.booleans()),
        min_agreement=draw(st.sampled_from([0.0, 0.5, 0.6, 0.75, 1.0])),
        min_confidence=draw(st.sampled_from([0.0, 0.3, 0.6])),
    )
    return samples, choices, confidences, filters


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=patterns())
def test_every_preference_is_derivable_from_its_kept_judgments(inputs, pattern):
    samples, choices, confidences, filters = pattern
    _, frame, prefs = run(inputs, samples, choices, confidences, filters)
    kept = frame.filter(pl.col("drop_reason").is_null())
    groups = {key: rows for key, rows in kept.group_by(["persona_id", "pair_id"])}
    assert prefs.height == len(groups)  # one preference per (persona, pair) with kept judgments, and only those
    for row in prefs.iter_rows(named=True):
        rows = groups[(row["persona_id"], row["pair_id"])]
        sides = Counter(rows["side"].to_list())
        (leader, top), *rest = sides.most_common()
        assert leader in ("a", "b") and all(n < top for _, n in rest)  # a clear winner, never a tie
        assert row["chosen_id"] == rows[f"{leader}_id"][0]
        assert row["rejected_id"] == rows[f"{'b' if leader == 'a' else 'a'}_id"][0]
        assert row["n_judgments"] == rows.height
        assert row["agreement"] == pytest.approx(top / rows.height)
        assert row["agreement"] >= filters.min_agreement
        assert row["judge_confidence"] == pytest.approx(rows["confidence"].mean())
        assert row["judge_confidence"] >= filters.min_confidence
        assert 0 <= row["confidence"] <= 1  # calibrated: it also reads the pair's dropped verdicts
        assert rows["error"].null_count() == rows.height  # only valid verdicts are kept
        if filters.swap_consistency:  # a kept judgment's other order is kept too, naming the same side
            per_sample = rows.group_by("sample").agg(pl.len(), pl.col("side").n_unique().alias("sides"))
            assert per_sample["len"].to_list() == [2] * per_sample.height
            assert per_sample["sides"].to_list() == [1] * per_sample.height


def test_swap_inconsistent_samples_do_not_vote(inputs):
    """The reported case: with 7 samples, one swap-consistent sample for response a and six samples for b whose
    partner order was invalid. Before, the preference chose b (agreement 0.75) while both kept judgments chose a."""
    samples = 7
    _, pairs = inputs
    per_pair = 2 * samples  # unit order in a (persona, pair): AB s0..s6, BA s0..s6
    pattern = ["A"] + ["B"] * 6 + ["B"] + [None] * 6  # AB: a, then b x6; BA: a (B shown second), then invalid
    choices = pattern * (PERSONAS * PAIRS)
    assert len(choices) == PERSONAS * PAIRS * per_pair
    _, frame, prefs = run(inputs, samples, choices, [0.9] * len(choices), FiltersConfig(min_agreement=0.75))
    assert prefs.height == PERSONAS * PAIRS
    for row in prefs.iter_rows(named=True):
        pair = next(p for p in pairs if p.id == row["pair_id"])
        assert row["chosen_id"] == pair.a.id
        assert (row["agreement"], row["n_judgments"]) == (1.0, 2)
    assert frame.filter(pl.col("drop_reason").is_null())["winner_id"].to_list() == [
        next(p for p in pairs if p.id == pid).a.id for pid in frame.filter(pl.col("drop_reason").is_null())["pair_id"]
    ]


def test_a_response_id_like_a_marker_keeps_its_wins(inputs, tmp_path):
    """Response ids are user data: one spelled like the old internal tie marker ("<tie>") is an ordinary id."""
    personas, pairs = inputs
    item = pairs[0].item
    renamed = item.__class__(
        id=item.id,
        topic=item.topic,
        prompt=item.prompt,
        responses=tuple(
            r.__class__(id="<tie>" if i == 0 else r.id, text=r.text, stance=r.stance, position=r.position)
            for i, r in enumerate(item.responses)
        ),
    )
    pair = make_pairs((renamed,))[0]
    assert pair.a.id == "<tie>"
    batch = UnitBatch.persona_major(personas[:1], (pair,), 1)
    frame = apply_filters(
        judgments_frame(batch, verdicts(["A", "B"], [0.9, 0.9]), META), filters_from_config(FiltersConfig())
    )
    prefs = preferences_frame(frame, batch, META, shipped())
    assert prefs["chosen_id"].to_list() == ["<tie>"]
    assert frame["drop_reason"].to_list() == [None, None]
