"""`polypref evaluate`: the held-out split rule, the predictors' accuracies on tables worked out by hand, and the
command on a real tiny build (simulated judge)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polypref import pipeline
from polypref.analysis.evaluate import describe, evaluate
from polypref.analysis.predictors import ideal_point
from polypref.config import load_config
from polypref.splits import split_fraction, split_of
from tests.conftest import CliResult, run_cli, run_without_prefect

SHARE = 0.3


def _ids(prefix: str, train: int, test: int) -> tuple[list[str], list[str]]:
    """``train`` ids the rule puts in train and ``test`` it puts in test, at ``SHARE``."""
    found: dict[str, list[str]] = {"train": [], "test": []}
    i = 0
    while len(found["train"]) < train or len(found["test"]) < test:
        pid = f"{prefix}{i}"
        found[split_of(pid, SHARE)].append(pid)
        i += 1
    return found["train"][:train], found["test"][:test]


def _rows(personas: list[str], group: str, picks: dict[str, str], attrs: dict[str, str]) -> list[dict]:
    """Every persona labels every pair of ``picks`` (pair -> chosen of responses "a"/"b") the same way."""
    return [
        {
            "pair_id": pair,
            "persona_id": p,
            "chosen_id": chosen,
            "rejected_id": "b" if chosen == "a" else "a",
            "persona_group": group,
            "persona_attributes": attrs,
            "matches_ground_truth": True,
        }
        for p in personas
        for pair, chosen in picks.items()
    ]


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows)


def test_split_rule_is_stable_per_id_and_near_the_share() -> None:
    ids = [f"persona-{i:05d}" for i in range(10_000)]
    split = {p: split_of(p, 0.1) for p in ids}
    share = sum(s == "test" for s in split.values()) / len(ids)
    assert abs(share - 0.1) < 0.01  # binomial sd 0.003
    # the rule reads the id alone: the same ids in another order, among others, land where they did
    again = {p: split_of(p, 0.1) for p in [*reversed(ids), *(f"other-{i}" for i in range(500))]}
    assert all(again[p] == split[p] for p in ids)
    # a larger share only moves personas into test, never out of it
    assert all(split_of(p, 0.2) == "test" for p in ids if split[p] == "test")
    assert all(0 <= split_fraction(p) < 1 for p in ids[:100])
    assert split_of("x", 0.0) == "train" and split_of("x", 1.0) == "test"
    with pytest.raises(ValueError):
        split_of("x", 1.5)


def test_groups_that_disagree_on_every_pair() -> None:
    """North always picks "a" on the even pairs and "b" on the odd ones, south the opposite. Train: 10 north,
    11 south, so the global majority is south's choice on every pair (share 11/21 = 0.52 < 0.8: every pair
    contested). Test: 5 north, 5 south, 4 pairs each: the global majority is right on south's 20 labels and
    wrong on north's 20 -> 0.5; the group (and its attribute, region) majority is right on all 40 -> 1.0;
    the headroom is 20/40 = 0.5. age is not part of the group, so it is no group attribute."""
    north_picks = {f"p{i}": "a" if i % 2 == 0 else "b" for i in range(4)}
    south_picks = {p: "b" if c == "a" else "a" for p, c in north_picks.items()}
    north_train, north_test = _ids("n", 10, 5)
    south_train, south_test = _ids("s", 11, 5)
    rows = _rows(north_train + north_test, "north", north_picks, {"region": "north", "age": "30"})
    rows += _rows(south_train + south_test, "south", south_picks, {"region": "south", "age": "30"})
    fig = evaluate(_frame(rows), test_share=SHARE)

    assert fig["personas"] == {"train": 21, "test": 10} and fig["labels"] == {"train": 84, "test": 40}
    assert fig["group_attributes"] == ["region"]
    assert fig["contested_pairs"] == 4
    overall = fig["overall"]
    assert overall["global_majority"] == 0.5 and overall["headroom"] == 0.5
    assert overall["group_majority"] == 1.0 and overall["attribute:region"] == 1.0
    assert overall["truth"] == 1.0
    assert fig["contested"]["global_majority"] == 0.5 and fig["contested"]["labels"] == 40
    assert fig["groups"]["north"]["global_majority"] == 0.0 and fig["groups"]["south"]["global_majority"] == 1.0
    assert fig["groups"]["north"]["group_majority"] == 1.0


def test_group_majority_falls_back_to_the_global_majority_where_the_group_has_no_train_label() -> None:
    """A west group with test personas only: its group majority is the global one (here "a", 3 train personas
    of 3), wrong on its "b" labels like the global majority."""
    train, _ = _ids("e", 3, 0)
    _, west = _ids("w", 0, 2)
    rows = _rows(train, "east", {"p0": "a"}, {"region": "east"}) + _rows(west, "west", {"p0": "b"}, {"region": "west"})
    fig = evaluate(_frame(rows), test_share=SHARE)
    assert fig["overall"]["group_majority"] == 0.0 == fig["overall"]["global_majority"]
    assert fig["contested_pairs"] == 0 and fig["contested"]["labels"] == 0
    assert fig["contested"]["global_majority"] is None


def test_k_shot_nearest_personas_find_the_archetype_the_global_majority_misses() -> None:
    """One group; personas copy archetype A ("a" on all 20 pairs) or B ("b" on all). Train: 20 A, 17 B, so the
    global majority is A's choice everywhere. Test: 4 A and 6 B with 20 labels each, and one more A persona with
    2 labels. Global majority: right on A's labels only, (4*20 + 2) / (10*20 + 2) = 82/202. For k >= 1 one shot
    separates the archetypes (every A train persona scores +k, every B -k, or the reverse), so the 16 nearest
    are all of the persona's archetype (each has >= 16 in train): 1.0 on every query. The 2-label persona has
    one query at k = 1 and is skipped (and counted) from k = 2 on."""
    pairs = {f"p{i:02d}": "a" for i in range(20)}
    a_train, a_test = _ids("a", 20, 5)
    b_train, b_test = _ids("b", 17, 6)
    short = a_test[-1]
    rows = _rows(a_train + a_test[:-1], "all", pairs, {"x": "all"})
    rows += _rows(b_train + b_test, "all", {p: "b" for p in pairs}, {"x": "all"})
    rows += _rows([short], "all", {"p00": "a", "p01": "a"}, {"x": "all"})
    fig = evaluate(_frame(rows), test_share=SHARE)

    overall = fig["overall"]
    assert overall["global_majority"] == round(float(Fraction(82, 202)), 4)
    assert overall["group_majority"] == overall["global_majority"]  # one group: no more than the population
    for k in (1, 2, 4, 8, 16):
        shot = overall["k_shot"][str(k)]
        assert shot["nearest_personas"] == 1.0, k
        full = 10 * (20 - k)  # the ten 20-label personas
        assert shot["queries"] == full + (1 if k == 1 else 0)
        assert shot["skipped_personas"] == (0 if k == 1 else 1)
        # the global majority on the same queries: A's four 20-label personas (and the short one's query at k=1)
        assert shot["global_majority"] == round((4 * (20 - k) + (k == 1)) / shot["queries"], 4)


def test_the_ideal_point_is_the_point_most_shots_prefer() -> None:
    """Hand-worked on a grid of eighths: one shot for 0 over 1 is satisfied at 0-0.375, whose middle lies
    between 0.125 and 0.25 (the lower wins); 0.5 over 0 and over 1 leaves 0.375-0.625, centred on 0.5; two shots
    that cancel leave every point level (0-1): 0.5; 1 over 0 and 0.5 over 1 leave only 0.625 at +2; no shot, no
    point."""
    assert ideal_point(np.array([0.0]), np.array([1.0]), 8) == 0.125
    assert ideal_point(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 8) == 0.5
    assert ideal_point(np.array([0.0, 1.0]), np.array([1.0, 0.0]), 8) == 0.5
    assert ideal_point(np.array([1.0, 0.5]), np.array([0.0, 1.0]), 8) == 0.625
    assert ideal_point(np.array([]), np.array([]), 8) is None


def test_the_attitude_model_reads_a_persona_the_population_misreads() -> None:
    """One topic, three stances in order (less, same, more) and its three pairs. Every train persona prefers the
    stance nearer "more"; every test persona the one nearer "less". The global majority gets no test label
    right. Two shots (any two of the three pairs) put the persona's point at 0 or 0.125 (the middle of 0-0.125 or
    of 0-0.375), nearer the chosen stance of the third pair: 1.0. Without the scales the model says nothing and
    falls back to the global majority."""
    scale = ["less", "same", "more"]
    pairs = {"ls": ("less", "same"), "lm": ("less", "more"), "sm": ("same", "more")}
    train, test = _ids("t", 12, 4)

    def rows(personas: list[str], toward: str) -> list[dict]:
        out = []
        for p in personas:
            for pair, (low, high) in pairs.items():
                chosen, rejected = (low, high) if toward == "less" else (high, low)
                out.append(
                    {
                        "pair_id": pair,
                        "persona_id": p,
                        "chosen_id": f"{pair}:{chosen}",
                        "rejected_id": f"{pair}:{rejected}",
                        "persona_group": "all",
                        "persona_attributes": {"x": "all"},
                        "matches_ground_truth": True,
                        "topic": "spend",
                        "chosen_stance": chosen,
                        "rejected_stance": rejected,
                    }
                )
        return out

    frame = _frame(rows(train, "more") + rows(test, "less"))
    fig = evaluate(frame, test_share=SHARE, scales={"spend": scale})
    two = fig["overall"]["k_shot"]["2"]
    assert fig["overall"]["global_majority"] == 0.0
    assert two["queries"] == 4 and two["attitude_model"] == 1.0 and two["attitude_covered"] == 1.0
    assert two["global_majority"] == 0.0 and fig["overall"]["k_shot"]["1"]["attitude_model"] > 0.5
    blind = evaluate(frame, test_share=SHARE)["overall"]["k_shot"]["2"]
    assert blind["attitude_covered"] == 0.0 and blind["attitude_model"] == blind["global_majority"] == 0.0
    assert "16-shot attitudes" in describe(fig)[1]


def test_shots_are_seeded_and_stable() -> None:
    """The same table gives the same figures; another seed picks other shots (so the 1-shot figure can move)."""
    rows = []
    for i in range(40):
        picks = {f"p{j}": "a" if (i * 7 + j * 3) % 5 < 2 else "b" for j in range(12)}
        rows += _rows([f"q{i}"], "all", picks, {"x": "all"})
    first, again = evaluate(_frame(rows), SHARE), evaluate(_frame(rows), SHARE)
    assert first == again
    other = [evaluate(_frame(rows), SHARE, seed=s)["overall"]["k_shot"]["1"]["nearest_personas"] for s in range(1, 6)]
    assert any(v != first["overall"]["k_shot"]["1"]["nearest_personas"] for v in other)


def _cli(*args: str, cwd: Path) -> CliResult:
    return run_cli(*args, cwd=cwd)


def test_evaluate_on_a_tiny_build_writes_consistent_figures(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_without_prefect(pipeline.plan(load_config(tiny_config, []), out))
    result = _cli("evaluate", str(out), "--json", "fig.json", "--test-share", "0.25", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "overall" in result.stdout and "16-shot" in result.stdout
    fig = json.loads((tmp_path / "fig.json").read_text())
    assert fig["folder"] == str(out) and fig["personas"]["test"] > 0 and fig["personas"]["train"] > 0
    assert fig["group_attributes"] == ["region", "sex"]

    def shares(node: object) -> list[float]:
        if isinstance(node, dict):
            return [v for k, n in node.items() if k not in ("test_share", "seed") for v in shares(n)]
        return [node] if isinstance(node, float) else []

    assert all(0.0 <= v <= 1.0 for v in shares({k: fig[k] for k in ("overall", "contested", "groups")}))
    for part in [fig["overall"], *fig["groups"].values()]:
        assert part["headroom"] == pytest.approx(1 - part["global_majority"], abs=1e-4)
        assert part["truth"] is not None  # simulated: the truth is known
    assert sum(g["labels"] for g in fig["groups"].values()) == fig["overall"]["labels"] == fig["labels"]["test"]

    again = _cli("evaluate", str(out), "--json", "fig.json", cwd=tmp_path)  # no --overwrite: refused, kept
    assert again.returncode == 2 and "exists" in again.stderr

    damaged = sorted((out / "data" / "preferences").glob("*.parquet"))[0]
    kept = damaged.read_bytes()
    damaged.write_bytes(kept[:300])  # a truncated shard: the file names it, nothing is written
    broken = _cli("evaluate", str(out), "--json", "broken.json", cwd=tmp_path)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr
    assert f"{out} is damaged" in broken.stderr and str(damaged) in broken.stderr
    assert not (tmp_path / "broken.json").exists()
    damaged.write_bytes(kept)

    (out / ".polypref" / "summary.json").unlink()  # as a build stopped before it finished
    unfinished = _cli("evaluate", str(out), cwd=tmp_path)
    assert unfinished.returncode == 2 and "no finished build" in unfinished.stderr
    assert str(out) in unfinished.stderr and "Traceback" not in unfinished.stderr


def test_evaluate_exits_2_on_a_folder_without_a_build(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in ("empty", "missing"):
        result = _cli("evaluate", folder, "--json", "x.json", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert folder in result.stderr and "Traceback" not in result.stdout + result.stderr
        assert not (tmp_path / "x.json").exists()
