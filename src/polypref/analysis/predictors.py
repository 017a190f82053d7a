"""The predictors ``analysis.evaluate`` scores on held-out personas: majorities (of every train persona, of a
group, of an attribute's value), k-shot nearest personas and the k-shot attitude model (an ideal point per topic);
see that module's docstring for each rule.

Plain polars/numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from polypref import splits

KS = (1, 2, 4, 8, 16)
ATTITUDE_STEPS = 8  # the ideal point's grid: [0, 1] in eighths (half steps of a five-point scale)
NEIGHBOURS = 16
STANCES = ["topic", "chosen_stance", "rejected_stance"]  # what the attitude model reads, where a build has them


def majority(frame: pl.DataFrame, keys: list[str], level: bool = True) -> pl.DataFrame:
    """Per key: the most chosen response and its share of the key's labels. Level votes go to the smaller
    response id when ``level``, else leave no majority (the caller falls back)."""
    counts = frame.group_by([*keys, "chosen_id"]).len()
    total = counts.group_by(keys).agg(pl.col("len").sum().alias("total"), pl.col("len").max().alias("top"))
    best = counts.join(total, on=keys).filter(pl.col("len") == pl.col("top"))
    if not level:
        best = best.filter(pl.col("len").count().over(keys) == 1)
    best = best.sort("chosen_id").unique(keys, keep="first")
    return best.select(*keys, pl.col("chosen_id").alias("majority"), (pl.col("top") / pl.col("total")).alias("share"))


def stance_positions(labels: pl.DataFrame, scales: Mapping[str, list[str]]) -> list[pl.Expr]:
    """Where each label's chosen and rejected stances lie on their topic's scale, 0..1 (null: not placed)."""
    places = {(t, stance): i / (len(scale) - 1) for t, scale in scales.items() for i, stance in enumerate(scale)}
    if not places or any(c not in labels.columns for c in STANCES):
        return [pl.lit(None, pl.Float64).alias("chosen_at"), pl.lit(None, pl.Float64).alias("rejected_at")]

    def at(column: str) -> pl.Expr:
        return pl.struct("topic", column).map_elements(
            lambda r, c=column: places.get((r["topic"], r[c])), return_dtype=pl.Float64
        )

    return [at("chosen_stance").alias("chosen_at"), at("rejected_stance").alias("rejected_at")]


def ideal_point(chosen: np.ndarray, rejected: np.ndarray, steps: int) -> float | None:
    """The point of [0, 1] (a grid of ``steps`` + 1 points) that the most shots prefer, a shot preferring the
    points nearer its chosen stance than its rejected one (net: agreeing shots minus disagreeing ones); of level
    best points, the one nearest the middle of their range (the lower on a tie): the centre of what the shots
    allow, not an edge of it. None without a shot."""
    if not len(chosen):
        return None
    grid = np.linspace(0.0, 1.0, steps + 1)
    near = np.abs(grid[:, None] - chosen[None, :]) - np.abs(grid[:, None] - rejected[None, :])
    score = (near < 0).sum(axis=1) - (near > 0).sum(axis=1)
    best = grid[score == score.max()]
    return float(best[np.argmin(np.abs(best - (best[0] + best[-1]) / 2))])


def _attitudes(own: pl.DataFrame, k: int, steps: int) -> list[bool | None]:
    """Per query (own's labels after the first k): True/False when the ideal point fit on the k shots of its
    topic names the chosen/rejected stance as nearer, None when it cannot say (no shot on the topic, a stance
    not on the scale, or equidistant)."""
    shots = own.head(k).drop_nulls(["chosen_at", "rejected_at"])
    points = {
        topic: ideal_point(rows["chosen_at"].to_numpy(), rows["rejected_at"].to_numpy(), steps)
        for (topic,), rows in shots.group_by(["topic"])
    }
    said: list[bool | None] = []
    for topic, chosen, rejected in own.slice(k).select("topic", "chosen_at", "rejected_at").iter_rows():
        point = points.get(topic)
        if point is None or chosen is None or rejected is None or abs(point - chosen) == abs(point - rejected):
            said.append(None)
        else:
            said.append(abs(point - chosen) < abs(point - rejected))
    return said


def k_shot(train: pl.DataFrame, test: pl.DataFrame, seed: int) -> dict[int, pl.DataFrame]:
    """Per k: the queries of every test persona with more than k labels, whether the nearest personas, the
    attitude model and the global majority got each right; skipped personas as rows with a null query."""
    pairs = sorted(set(train["pair_id"]) | set(test["pair_id"]))
    col = {p: i for i, p in enumerate(pairs)}
    people = sorted(train["persona_id"].unique())
    row = {p: i for i, p in enumerate(people)}
    votes = np.zeros((len(people), len(pairs)), dtype=np.int8)  # +1: chose the pair's first id, -1: its second
    side = np.where(train["chosen_id"] == train["first_id"], 1, -1)
    votes[[row[p] for p in train["persona_id"]], [col[p] for p in train["pair_id"]]] = side
    out: dict[int, list[dict[str, Any]]] = {k: [] for k in KS}
    for (persona,), own in test.group_by(["persona_id"], maintain_order=True):
        own = own.with_columns(
            order=pl.col("pair_id").map_elements(
                lambda p, q=persona: splits.shot_order(seed, q, p), return_dtype=pl.Binary
            )
        ).sort("order")
        idx = np.array([col[p] for p in own["pair_id"]])
        mine = np.where(own["chosen_id"] == own["first_id"], 1, -1)
        for k in KS:
            if own.height < k + 1:
                out[k].append({"persona_id": persona, "pair_id": None, "nearest": None, "global": None})
                continue
            score = votes[:, idx[:k]].astype(np.int32) @ mine[:k]
            model = _attitudes(own, k, ATTITUDE_STEPS)
            for j in range(k, own.height):
                q = idx[j]
                voters = np.flatnonzero(votes[:, q])
                top = voters[np.lexsort((voters, -score[voters]))[:NEIGHBOURS]]  # stable: smaller persona_id first
                vote = int(votes[top, q].sum())
                glob = own["global"][j]
                guess = glob if vote == 0 else own["first_id"][j] if vote > 0 else own["second_id"][j]
                chosen = own["chosen_id"][j]
                said = model[j - k]
                out[k].append(
                    {
                        "persona_id": persona,
                        "pair_id": own["pair_id"][j],
                        "nearest": guess == chosen,
                        "attitudes": glob == chosen if said is None else said,
                        "covered": said is not None,
                        "global": glob == chosen,
                    }
                )
    keys = test.select("persona_id", "pair_id", "persona_group", "contested")
    schema = {
        "persona_id": pl.String,
        "pair_id": pl.String,
        "nearest": pl.Boolean,
        "attitudes": pl.Boolean,
        "covered": pl.Boolean,
        "global": pl.Boolean,
    }
    return {
        k: pl.DataFrame(r, schema=schema)
        .join(keys.unique("persona_id").select("persona_id", "persona_group"), on="persona_id")
        .join(keys.select("persona_id", "pair_id", "contested"), on=["persona_id", "pair_id"], how="left")
        for k, r in out.items()
    }


def k_figures(frame: pl.DataFrame, rows: pl.DataFrame, k: int) -> dict[str, Any]:
    """A slice's k-shot figures; ``frame`` holds its queries (and skipped personas, with no query)."""
    queries = frame.filter(pl.col("pair_id").is_not_null())
    skipped = frame.filter(pl.col("pair_id").is_null())["persona_id"]
    return {
        "queries": queries.height,
        "personas": queries["persona_id"].n_unique(),
        "skipped_personas": len(set(skipped) & set(rows["persona_id"])),
        "nearest_personas": share_true(queries["nearest"]),
        "attitude_model": share_true(queries["attitudes"]),
        "attitude_covered": share_true(queries["covered"]),
        "global_majority": share_true(queries["global"]),
    }


def share_true(column: pl.Series) -> float | None:
    """Share of true values among the non-null ones, rounded; None when there are none."""
    known = column.drop_nulls()
    return round(float(known.cast(pl.Float64).mean()), 4) if len(known) else None  # type: ignore[arg-type]
