"""Unseen-persona splits on real builds (simulated judge): whole personas by a stable hash of persona_id, every
per-persona config split alike and loadable by split, a persona's split kept as the population grows, and a
changed `output.splits` made from the judgment store without a request."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import pipeline
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.judges import make_judge
from polypref.splits import PERSONA_CONFIGS, split_of
from tests.conftest import run_without_prefect
from tests.integration.test_build_cli import default_pairs
from tests.judges import WrapperJudge

pytestmark = pytest.mark.integration

PAIRS = default_pairs()
# about 10 personas a shard (each judges every pair in both orders): several shards, a test persona or more
SMALL = [f"output.units_per_shard={10 * PAIRS * 2 + 20}"]


def _build(out: Path, *settings: str) -> tuple[dict, WrapperJudge]:
    plan = pipeline.plan(load_config(None, [*SMALL, *settings]), out)
    judge = WrapperJudge(make_judge(plan.config.judge, plan.config.seed))
    return run_without_prefect(plan, judge), judge


def _load(out: Path, config: str, split: str) -> pl.DataFrame:
    import datasets

    loaded = datasets.load_dataset(str(out), config, split=split, cache_dir=tempfile.mkdtemp(prefix="hfds-"))
    return pl.from_arrow(loaded.data.table)  # type: ignore[return-value]


def _splits_by_persona(out: Path) -> dict[str, str]:
    """Each persona's split, as the personas files' names say."""
    found = {}
    for path in (out / "data" / "personas").glob("*.parquet"):
        for persona in pl.read_parquet(path, columns=["persona_id"])["persona_id"]:
            found[persona] = path.name.split("-")[0]
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("splits") / "out"
    summary, _ = _build(out, "population.size=40")
    return out, summary


def test_train_and_test_together_hold_every_preference_once_and_no_persona_twice(built) -> None:
    out, summary = built
    every = pl.read_parquet(out / "data" / "preferences")  # the files' glob still finds every row
    train, test = _load(out, "preferences", "train"), _load(out, "preferences", "test")
    assert train.height + test.height == every.height == summary["preferences"]
    key = ["persona_id", "pair_id"]
    both = pl.concat([train.select(key), test.select(key)])
    assert both.is_unique().all() and both.sort(key).equals(every.select(key).sort(key))
    assert not set(train["persona_id"]) & set(test["persona_id"])
    assert set(test["persona_id"]) == {p for p in every["persona_id"] if split_of(p, 0.1) == "test"} != set()

    for config in PERSONA_CONFIGS:  # every per-persona config is split the same way
        for split in ("train", "test"):
            rows = _load(out, config, split)
            assert rows.height == summary["splits"]["rows"][config][split] > 0, (config, split)
            assert {split_of(p, 0.1) for p in rows["persona_id"]} == {split}, (config, split)
    for config in ("pairs", "map"):  # not about one persona: one split
        assert summary["splits"]["rows"][config].keys() == {"train"}

    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    prefs = next(c for c in card["configs"] if c["config_name"] == "preferences")
    assert prefs["data_files"] == [
        {"split": "train", "path": "data/preferences/train-*.parquet"},
        {"split": "test", "path": "data/preferences/test-*.parquet"},
    ]
    text = (out / "README.md").read_text()
    assert 'load_dataset("<this repo or folder>", "preferences", split="test")' in text
    assert "stable hash of `persona_id`" in text and "never changes split as the population grows" in text
    assert BuildState(out).whole_build_problems() == []  # every file recorded with its digest


def test_a_grown_population_keeps_every_persona_in_its_split_and_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(out, "population.size=30")
    before = _splits_by_persona(out)
    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "data").rglob("*.parquet")}
    _, judge = _build(out, "population.size=60")
    # the new personas' judgments, and the simulator's persona-free run if the population's modal answers moved
    assert 30 * PAIRS * 2 <= judge.asked <= 30 * PAIRS * 2 + PAIRS * 2
    after = _splits_by_persona(out)
    assert len(after) == 60 and {p: after[p] for p in before} == before
    assert all(split == split_of(p, 0.1) for p, split in after.items())
    kept = ("judgments", "preferences", "personas")  # the shards' files; weights and review are the whole dataset's
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == h for p, h in files.items() if p.parent.name in kept)
    test = _load(out, "preferences", "test")
    assert set(test["persona_id"]) == {p for p, s in after.items() if s == "test"} & set(
        pl.read_parquet(out / "data" / "preferences")["persona_id"]
    )
    assert BuildState(out).whole_build_problems() == []


def test_changed_splits_reuse_every_judgment_and_leave_no_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    one, judge = _build(out, "population.size=30", "output.splits={train: 1.0}")
    assert judge.asked > 0 and one["splits"]["rows"]["preferences"].keys() == {"train"}
    assert not list((out / "data").rglob("test-*.parquet"))

    for splits in ("{train: 0.7, validation: 0.1, test: 0.2}", "{train: 1.0}"):
        again, judge = _build(out, "population.size=30", f"output.splits={splits}")
        assert judge.asked == 0  # a changed split rewrites files from the judgment store
        assert again["reused_judgments"] == again["judgments"] == one["judgments"]
        assert again["preferences"] == one["preferences"]
        shares = yaml.safe_load(splits)
        for config in PERSONA_CONFIGS:  # every row in the file of its persona's split, and no other file
            for path in (out / "data" / config).iterdir():
                personas = pl.read_parquet(path, columns=["persona_id"])["persona_id"]
                split = path.name.split("-")[0]
                assert split in shares, path
                assert all(_split(p, shares) == split for p in personas), path
        assert BuildState(out).whole_build_problems() == []  # push would take it: nothing stray in data/
    assert not list((out / "data").rglob("test-*.parquet")) and not list((out / "data").rglob("validation-*"))


def _split(persona: str, shares: dict[str, float]) -> str:
    from polypref.splits import split_fraction

    place, end = split_fraction(persona), 0.0
    for name in ("test", "validation", "train"):
        end += shares.get(name, 0.0)
        if place < end:
            return name
    return "train"
