"""The `episodes` config (FSPO's few-shot layout) on real builds with the simulated judge: each persona's shots
and queries are exactly its preferences in shot order, in its split's file; turning it on, changing it or
turning it off asks the judge nothing and leaves no stale file; any `output.episodes` value loads exactly or
stops the CLI with exit 2 naming the field."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.dataset.episodes import split_episodes
from polypref.judges import make_judge
from polypref.splits import shot_order, split_of
from tests.conftest import load_with_datasets, run_cli, run_without_prefect
from tests.integration.test_build_cli import default_pairs
from tests.judges import WrapperJudge

pytestmark = pytest.mark.integration

PERSONAS = 30
# about 5/9 of the pairs, below what most personas keep but above what a few do: some personas have no query left
SHOTS = default_pairs() * 5 // 9


def _build(out: Path, *settings: str) -> tuple[dict, WrapperJudge]:
    plan = pipeline.plan(load_config(None, [f"population.size={PERSONAS}", *settings]), out)
    judge = WrapperJudge(make_judge(plan.config.judge, plan.config.seed))
    return run_without_prefect(plan, judge), judge


def _expected(preferences: pl.DataFrame, shots: int, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """Each persona's (shot pair ids, query pair ids), from the rule stated in the docs: its preferences sorted by
    sha256(seed, persona, pair), the first `shots` as shots, personas with no query left out."""
    found = {}
    for (persona,), rows in preferences.group_by(["persona_id"]):
        pairs = sorted(rows["pair_id"], key=lambda pair, p=persona: shot_order(seed, p, pair))
        if len(pairs) > shots:
            found[persona] = (pairs[:shots], pairs[shots:])
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("episodes") / "out"
    summary, _ = _build(out, f"output.episodes={{shots: {SHOTS}, seed: 3}}")
    return out, summary


def test_episodes_hold_each_personas_preferences_in_shot_order_in_its_split(built) -> None:
    out, summary = built
    preferences = pl.read_parquet(out / "data" / "preferences")
    expected = _expected(preferences, SHOTS, 3)
    assert 0 < len(expected) < PERSONAS  # some personas have no query at SHOTS shots: they have no episode
    loaded = {split: load_with_datasets(out, "episodes", split=split) for split in ("train", "test")}
    assert summary["episodes"] == sum(d.num_rows for d in loaded.values()) == len(expected)
    texts = {(r["persona_id"], r["pair_id"]): r for r in preferences.iter_rows(named=True)}
    for split, rows in loaded.items():
        for row in rows:
            persona = row["persona_id"]
            assert split_of(persona, 0.1) == split
            shots, queries = expected[persona]
            assert [s["pair_id"] for s in row["shots"]] == shots
            assert [q["pair_id"] for q in row["queries"]] == queries
            assert row["n_shots"] == SHOTS and row["n_queries"] == len(queries) and row["seed"] == 3
            for label in row["shots"] + row["queries"]:
                source = texts[(persona, label["pair_id"])]
                assert (label["prompt"], label["chosen"], label["rejected"]) == (
                    source["prompt"],
                    source["chosen"],
                    source["rejected"],
                )
                assert label["chosen_id"] == source["chosen_id"] and label["topic"] == source["topic"]
    card = (out / "README.md").read_text()
    assert f"| `episodes` | {len(expected)} |" in card and "### `episodes`" in card
    assert BuildState(out).whole_build_problems() == []


def test_episodes_on_changed_and_off_ask_nothing_and_leave_no_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first, judge = _build(out)
    assert judge.asked > 0 and first["episodes"] is None and not (out / "data" / "episodes").exists()
    assert "config_name: episodes" not in (out / "README.md").read_text()
    preferences = pl.read_parquet(out / "data" / "preferences")
    for setting, shots, seed in [("{shots: 4, seed: 0}", 4, 0), ("{shots: 8, seed: 1}", 8, 1)]:
        again, judge = _build(out, f"output.episodes={setting}")
        assert judge.asked == 0 and again["reused_judgments"] == again["judgments"]
        episodes = pl.read_parquet(out / "data" / "episodes")
        assert episodes.height == len(_expected(preferences, shots, seed)) == again["episodes"]
        assert BuildState(out).whole_build_problems() == []
    off, judge = _build(out)
    assert judge.asked == 0 and off["episodes"] is None
    assert not list((out / "data" / "episodes").glob("*.parquet"))  # the files and their records went
    assert not any(name.startswith("data/episodes/") for name in BuildState(out).recorded_files())
    assert BuildState(out).whole_build_problems() == []


def test_personas_taken_a_slice_at_a_time_give_the_same_episodes(built) -> None:
    out, _ = built
    files = sorted((out / "data" / "preferences").glob("train-*.parquet"))
    whole = pl.concat(list(split_episodes(files, 5, 0)))
    sliced = list(split_episodes(files, 5, 0, rows_per_part=100))
    assert len(sliced) > 3 and pl.concat(sliced).equals(whole)


episodes_values = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "shots": st.one_of(st.integers(-3, 20_000), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
            "seed": st.one_of(st.integers(-3, 2**63), st.booleans(), st.text(max_size=3)),
            "extra": st.integers(),
        },
    ),
    st.integers(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


def _valid(value: Any) -> bool:
    """The rule, stated apart from the code: null, or a mapping of shots (an integer 1-10,000) and seed (an
    integer >= 0), both optional, nothing else. YAML integers only: booleans and floats are refused."""
    if value is None:
        return True
    if not isinstance(value, dict) or set(value) - {"shots", "seed"}:
        return False
    shots, seed = value.get("shots", 8), value.get("seed", 0)
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (shots, seed))
    return whole and 1 <= shots <= 10_000 and seed >= 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=episodes_values)
def test_episodes_settings_load_exactly_or_exit_2_naming_the_field(value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "build.yaml"
        config.write_text(yaml.safe_dump({"population": {"size": 5}, "output": {"episodes": value}}))
        if _valid(value):
            loaded = load_config(config).output.episodes
            if value is None:
                assert loaded is None
            else:
                assert (loaded.shots, loaded.seed) == (value.get("shots", 8), value.get("seed", 0))
            return
        out = Path(tmp) / "out"
        code, stdout, stderr = run_cli("build", str(config), "--out", str(out), "--no-progress")
        assert code == 2, (stdout, stderr)
        assert "output.episodes" in stderr and "Traceback" not in stderr
        assert str(config) in stderr or config.name in stderr
        assert not out.exists()  # before any work
