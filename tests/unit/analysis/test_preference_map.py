"""The preference-space map (analysis/preference_map.py) on crafted votes whose layout is known in advance."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polypref.analysis.preference_map import MAP_SCHEMA, preference_map, render_png
from polypref.dataset.schema import to_arrow

PAIRS = [f"q{j:02d}" for j in range(12)]


def _row(persona: str, group: str, pair: str, first: bool) -> dict[str, str]:
    """A preference row: ``first`` chooses the pair's response "<pair>-a" over "<pair>-b"."""
    a, b = f"{pair}-a", f"{pair}-b"
    return {
        "persona_id": persona,
        "persona_group": group,
        "pair_id": pair,
        "chosen_id": a if first else b,
        "rejected_id": b if first else a,
    }


def _camps(missing: bool = False) -> pl.DataFrame:
    """Camp A chooses "-a" on every pair, camp B "-b"; each persona deviates on one pair (so vectors differ).

    With ``missing``, each persona also skips one pair, so imputation is exercised.
    """
    rows = []
    for camp, group, first in (("A", "left", True), ("B", "right", False)):
        for i in range(5):
            for j, pair in enumerate(PAIRS):
                if missing and j == (i + 2) % len(PAIRS):
                    continue
                rows.append(_row(f"{camp}{i}", group, pair, first != (j == i)))
    return pl.DataFrame(rows)


def _baseline(label: str, first: bool, pairs: list[str] = PAIRS) -> pl.DataFrame:
    rows = [_row("-", "-", p, first) for p in pairs]
    return pl.DataFrame(rows).select(pl.lit(label).alias("label"), "pair_id", "chosen_id", "rejected_id")


def _coords(frame: pl.DataFrame) -> dict[str, tuple[float, float]]:
    return {p: (x, y) for p, x, y in frame.select("point_id", "x", "y").iter_rows()}


@pytest.mark.parametrize("missing", [False, True])
def test_two_camps_land_on_opposite_sides_and_a_baseline_joins_its_camp(missing: bool) -> None:
    baselines = pl.concat([_baseline("model-likes-a", True), _baseline("model-likes-b", False)])
    out = preference_map(_camps(missing), baselines)
    assert out.schema == pl.Schema(MAP_SCHEMA)
    xs = dict(out.select("point_id", "x").iter_rows())
    a = [xs[f"A{i}"] for i in range(5)]
    b = [xs[f"B{i}"] for i in range(5)]
    assert (max(a) < 0 < min(b)) or (max(b) < 0 < min(a)), (a, b)
    gap = abs(np.mean(a) - np.mean(b))
    assert abs(xs["model-likes-a"] - np.mean(a)) < gap / 4
    assert abs(xs["model-likes-b"] - np.mean(b)) < gap / 4
    # x carries the camp split: most of the variance
    assert out["explained_x"][0] > 0.5 > out["explained_y"][0] >= 0
    runs = out.filter(pl.col("kind") == "persona-free")
    assert runs["point_id"].to_list() == ["model-likes-a", "model-likes-b"]
    assert runs["group"].null_count() == 2 and runs["n_pairs"].to_list() == [12, 12]
    personas = out.filter(pl.col("kind") == "persona")
    assert dict(personas.select("point_id", "group").iter_rows())["A3"] == "left"
    assert set(personas["n_pairs"].to_list()) == ({11} if missing else {12})


def test_coordinates_are_deterministic_and_independent_of_row_order() -> None:
    prefs, base = _camps(missing=True), _baseline("run", True, PAIRS[:4])
    first = preference_map(prefs, base)
    assert preference_map(prefs, base).equals(first)
    shuffled = preference_map(prefs.sample(fraction=1.0, shuffle=True, seed=7), base.reverse())
    assert shuffled["point_id"].to_list() == first["point_id"].to_list()
    np.testing.assert_allclose(shuffled.select("x", "y").to_numpy(), first.select("x", "y").to_numpy(), atol=1e-12)


def test_sign_convention_and_swapping_every_choice_mirrors_the_map() -> None:
    """The largest-|loading| pairs (q05..q11: no persona deviates there) load positively, so whoever chose the
    pair's first response id there is at x > 0; swapping every choice therefore mirrors the map exactly."""
    prefs = _camps()
    flipped = prefs.with_columns(chosen_id=pl.col("rejected_id"), rejected_id=pl.col("chosen_id"))
    a, b = preference_map(prefs), preference_map(flipped)
    assert (a.filter(pl.col("group") == "left")["x"] > 0).all()
    assert (b.filter(pl.col("group") == "right")["x"] > 0).all()
    np.testing.assert_allclose(a.select("x", "y").to_numpy(), -b.select("x", "y").to_numpy(), atol=1e-12)


def test_missing_votes_count_as_the_pair_mean() -> None:
    """Unbalanced camps (so pair means are not 0) with gaps, against a by-hand PCA (eigh of the covariance)."""
    prefs = _camps(missing=True).filter(pl.col("persona_id") != "B4")
    prefs = pl.concat([prefs, pl.DataFrame([_row("Q", "left", p, True) for p in PAIRS[6:]])])
    out = preference_map(prefs).filter(pl.col("kind") == "persona")
    ids = out["point_id"].to_list()
    matrix = np.full((len(ids), len(PAIRS)), np.nan)
    for r in prefs.iter_rows(named=True):
        matrix[ids.index(r["persona_id"]), PAIRS.index(r["pair_id"])] = 1.0 if r["chosen_id"].endswith("-a") else -1.0
    means = np.nanmean(matrix, axis=0)
    centred = np.where(np.isnan(matrix), 0.0, matrix - means)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, np.argsort(values)[::-1][:2]]
    expected = np.abs(centred @ top)
    np.testing.assert_allclose(np.abs(out.select("x", "y").to_numpy()), expected, atol=1e-9)
    assert out["explained_x"][0] == pytest.approx(np.sort(values)[-1] / values.sum())
    q = out.filter(pl.col("point_id") == "Q").row(0, named=True)
    assert q["n_pairs"] == 6 and 0 < q["x"] < out.filter(pl.col("point_id") == "A3")["x"][0]


def test_baseline_pairs_outside_the_map_are_ignored_and_missing_ones_sit_at_the_mean() -> None:
    extra = pl.concat([_baseline("run", True, PAIRS[:3]), _baseline("run", True, ["unseen"])])
    out = preference_map(_camps(), extra)
    run = out.filter(pl.col("kind") == "persona-free").row(0, named=True)
    assert run["n_pairs"] == 3
    # Agreeing with camp A on half the pairs puts it between the centre and camp A
    camp_a = out.filter(pl.col("group") == "left")["x"].mean()
    assert 0 < run["x"] / camp_a < 1


def test_a_run_that_copies_a_persona_lands_on_it() -> None:
    """Same votes, same gaps, same point: runs are projected exactly as personas are, gaps included."""
    prefs = _camps(missing=True).filter(~pl.col("persona_id").is_in(["B3", "B4"]))  # pair means are not 0
    twin = prefs.filter(pl.col("persona_id") == "A3").select(
        pl.lit("twin").alias("label"), "pair_id", "chosen_id", "rejected_id"
    )
    coords = _coords(preference_map(prefs, twin))
    np.testing.assert_allclose(coords["twin"], coords["A3"], atol=1e-12)


def test_table_meets_its_contract() -> None:
    out = preference_map(_camps(), _baseline("run", False)).with_columns(
        run_id=pl.lit("r"), created_at=pl.lit(datetime(2026, 1, 1, tzinfo=UTC))
    )
    table = to_arrow("map", out)
    assert table.num_rows == 11
    assert table.column_names == [*MAP_SCHEMA, "run_id", "created_at"]


def test_degenerate_inputs_give_zeros_not_errors(tmp_path: Path) -> None:
    empty = _camps().clear()
    out = preference_map(empty, _baseline("run", True))
    assert out.filter(pl.col("kind") == "persona").height == 0
    assert out.select("x", "y", "n_pairs").row(0) == (0.0, 0.0, 0)

    one_persona = _camps().filter(pl.col("persona_id") == "A0")
    out = preference_map(one_persona, _baseline("run", False))
    assert out.select("x", "y").to_numpy().tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert (out["explained_x"][0], out["explained_y"][0]) == (0.0, 0.0)

    alike = pl.DataFrame([_row(f"p{i}", "g", p, True) for i in range(4) for p in PAIRS])
    out = preference_map(alike, _baseline("run", False))
    assert not out.select("x", "y").to_numpy().any()

    one_pair = _camps().filter(pl.col("pair_id") == "q05")
    out = preference_map(one_pair, _baseline("run", True, ["q05"]))
    assert out["explained_x"][0] == pytest.approx(1.0) and out["explained_y"][0] == 0.0
    assert not out["y"].to_numpy().any() and out["x"].to_numpy().any()

    # Rank 1 (two identical camps): a baseline must not get a y along an arbitrary null-space direction
    two = pl.DataFrame(
        [_row(p, "g", q, p.startswith("A")) for p in ("A0", "A1", "B0", "B1") for q in PAIRS]
        + [_row("A2", "g", q, True) for q in PAIRS]
    )
    out = preference_map(two, _baseline("run", True, PAIRS[:2]))
    assert out["explained_y"][0] == 0.0 and not out["y"].to_numpy().any()

    for name, frame in [("empty", preference_map(empty)), ("alike", preference_map(alike))]:
        render_png(frame, tmp_path / f"{name}.png", name)
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _many_groups() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    rows = [
        _row(f"g{g}p{i}", f"group {g:02d} · a long attribute label here", p, bool(rng.random() < g / 25))
        for g in range(25)
        for i in range(g % 4 + 1)
        for p in PAIRS
    ]
    return pl.DataFrame(rows)


def test_png_is_byte_identical_for_identical_input(tmp_path: Path) -> None:
    base = pl.concat([_baseline("judge (persona-free)", True), _baseline("another/model-name", False)])
    out = preference_map(_many_groups(), base)
    render_png(out, tmp_path / "one.png", "Preference space")
    render_png(preference_map(_many_groups(), base), tmp_path / "sub" / "two.png", "Preference space")
    data = (tmp_path / "one.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert data == (tmp_path / "sub" / "two.png").read_bytes()
    assert b"Software" not in data and b"matplotlib" not in data.lower()
    assert list(tmp_path.iterdir()) and not list(tmp_path.glob("*.tmp*"))  # atomic write leaves no temp file
    render_png(out, tmp_path / "three.png", "Another title")
    assert (tmp_path / "three.png").read_bytes() != data  # the bytes do depend on the content
