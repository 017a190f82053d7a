"""The preference-space map: where personas, and persona-free model runs, sit in the space of their votes.

Fair-PP placed personas and mainstream models on a 2-D PCA of answer vectors; here a point's vector is its
vote on every pair of the build (+1 / -1, see ``vote_side``), so two personas land close when they chose the
same responses, not merely the same share of answers. The PCA is fitted on the personas alone and the
persona-free runs are projected into it, so a model's position reads as "which personas it judges like"
without the model pulling the axes toward itself.

Plain numpy/polars/matplotlib: the build flow calls ``preference_map`` on the preferences config and writes
the table (contract: schemas/map.json, ``MapRecord``) and ``render_png``'s picture into the dataset folder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from polypref.files import write_bytes
from polypref.splits import split_files

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

PERSONA = "persona"
PERSONA_FREE = "persona-free"

# The table the map returns (run_id and created_at, which MapRecord also requires, are the caller's to add).
MAP_SCHEMA: dict[str, pl.DataType] = {
    "point_id": pl.String(),
    "kind": pl.String(),
    "group": pl.String(),
    "x": pl.Float64(),
    "y": pl.Float64(),
    "n_pairs": pl.Int64(),
    "explained_x": pl.Float64(),
    "explained_y": pl.Float64(),
}

# Figure constants: fixed so that identical input renders identical bytes.
_FIGSIZE = (8.0, 7.0)
_DPI = 110
_NAMED_GROUPS = 9  # the largest groups get their own colour (tab10 less its grey); the rest are "other"
_LABEL_CHARS = 40
_OTHER = "#b0b0b0"


def vote_side() -> pl.Expr:
    """+1 when the chosen response id sorts before the rejected one, else -1.

    The preferences config keeps only chosen/rejected ids (which response was "A" is gone), so the pair's two
    ids in sorted order give each pair a fixed orientation: the same choice always gets the same sign, whoever
    makes it, and swapping chosen and rejected flips it.
    """
    return pl.when(pl.col("chosen_id") < pl.col("rejected_id")).then(1.0).otherwise(-1.0)


def _votes(frame: pl.DataFrame, point: str) -> pl.DataFrame:
    """(point, pair_id, vote): the mean side over a point's rows for a pair (one row each in preferences)."""
    return (
        frame.filter(pl.col("chosen_id").is_not_null() & pl.col("rejected_id").is_not_null())
        .group_by(point, "pair_id")
        .agg(vote=vote_side().mean())
    )


def _components(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal axes (2 x pairs, sign-fixed) and the variance share each explains.

    Axes beyond the matrix's rank are zero rather than an arbitrary null-space direction: personas would sit
    at 0 on them anyway, but a projected baseline would get a meaningless coordinate.
    """
    n, p = centred.shape
    axes = np.zeros((2, p))
    shares = np.zeros(2)
    if n < 2 or p < 1:
        return axes, shares
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float(np.sum(s**2))
    tol = (s[0] if s.size else 0.0) * max(n, p) * np.finfo(float).eps
    for k in range(min(2, s.size)):
        if s[k] <= tol or total <= 0:
            continue
        axis = vt[k]
        # Sign convention: the largest-|loading| pair loads positively (rounded, so near-ties pick the first pair).
        if axis[int(np.argmax(np.round(np.abs(axis), 9)))] < 0:
            axis = -axis
        axes[k] = axis
        shares[k] = float(s[k] ** 2) / total
    return axes, shares


def preference_map(preferences: pl.DataFrame, baselines: pl.DataFrame | None = None) -> pl.DataFrame:
    """Map personas (and persona-free runs) to 2-D by PCA of their per-pair votes.

    ``preferences`` needs persona_id, persona_group, pair_id, chosen_id and rejected_id (the preferences
    config). ``baselines`` has label, pair_id, chosen_id, rejected_id: one point per label, projected with the
    personas' fit; its pairs outside the personas' pairs are ignored (the axes do not span them).

    A missing vote is imputed with the pair's mean over personas (0 after centring), so it pulls a point
    toward the centre rather than toward either side. Returns one row per point (personas by persona_id, then
    runs by label) in ``MAP_SCHEMA``; explained_x/explained_y, the same on every row, are the shares of the
    personas' vote variance the axes carry. Degenerate input does not raise: with fewer than two personas, or
    when all personas voted alike, there is no variance and every coordinate (and share) is 0; with a single
    pair, y is 0.
    """
    groups = (
        preferences.group_by("persona_id")
        .agg(pl.col("persona_group").drop_nulls().sort().first())
        .select("persona_id", "persona_group")
    )
    return _map(_votes(preferences, "persona_id"), groups, baselines)


def _map(votes: pl.DataFrame, groups: pl.DataFrame, baselines: pl.DataFrame | None) -> pl.DataFrame:
    """preference_map from the personas' votes (persona_id, pair_id, vote) and groups (persona_id, persona_group)."""
    # rows and columns in sorted id order, found by rank (not by a Python lookup per vote: there are millions)
    votes = votes.with_columns(
        row=pl.col("persona_id").rank("dense").cast(pl.Int64) - 1,
        col=pl.col("pair_id").rank("dense").cast(pl.Int64) - 1,
    )
    persona_ids = votes["persona_id"].unique().sort().to_list()
    # pairs stay a column (10^6 of them): no Python string or dict entry per pair
    columns = votes.filter(pl.col("col").is_first_distinct()).select("pair_id", "col")  # lighter than unique()
    matrix = np.full((len(persona_ids), columns.height), np.nan)
    matrix[votes["row"].to_numpy(), votes["col"].to_numpy()] = votes["vote"].to_numpy()
    del votes

    observed = ~np.isnan(matrix)
    counts = observed.sum(axis=0)
    means = np.divide(np.nansum(matrix, axis=0), counts, out=np.zeros(columns.height), where=counts > 0)
    centred = np.where(observed, matrix - means, 0.0)
    axes, shares = _components(centred)
    coords = centred @ axes.T

    group_of = dict(groups.iter_rows())
    rows: list[dict[str, object]] = [
        {
            "point_id": pid,
            "kind": PERSONA,
            "group": group_of.get(pid),
            "x": float(coords[i, 0]),
            "y": float(coords[i, 1]),
            "n_pairs": int(observed[i].sum()),
        }
        for i, pid in enumerate(persona_ids)
    ]

    if baselines is not None and baselines.height:
        base = _votes(baselines, "label").join(columns, on="pair_id")  # the pairs some persona voted on
        for label in sorted(baselines["label"].drop_nulls().unique().to_list()):
            mine = base.filter(pl.col("label") == label)
            vector = means.copy()
            vector[mine["col"].to_numpy()] = mine["vote"].to_numpy()
            x, y = ((vector - means) @ axes.T).tolist()
            rows.append(
                {"point_id": label, "kind": PERSONA_FREE, "group": None, "x": x, "y": y, "n_pairs": mine.height}
            )

    frame = pl.DataFrame(rows, schema={k: v for k, v in MAP_SCHEMA.items() if not k.startswith("explained")})
    return frame.with_columns(
        explained_x=pl.lit(float(shares[0]), dtype=pl.Float64), explained_y=pl.lit(float(shares[1]), dtype=pl.Float64)
    ).select(list(MAP_SCHEMA))


def _marker(label: str, color: str | tuple[float, ...], marker: str = "o", size: float = 6) -> Line2D:
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="", marker=marker, markersize=size, color=color, label=label)


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def render_png(map_frame: pl.DataFrame, path: Path, title: str) -> None:
    """Draw the map as a PNG at ``path``: personas as dots coloured by group, persona-free runs as labelled stars.

    The largest groups get their own colours and the rest share a grey "other", so the legend stays readable
    with dozens of groups. The bytes depend on the input alone (matplotlib's default style whatever the local
    rc, fixed size and dpi, no Software/date metadata), so a publish step that compares bytes sees no change
    when the map did not change. Written atomically.
    """
    from matplotlib import style
    from matplotlib.figure import Figure

    personas = map_frame.filter(pl.col("kind") == PERSONA)
    runs = map_frame.filter(pl.col("kind") == PERSONA_FREE).sort("point_id")
    explained = (
        (float(map_frame["explained_x"][0]), float(map_frame["explained_y"][0])) if map_frame.height else (0.0, 0.0)
    )

    with style.context("default"):
        fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
        ax = fig.add_subplot()
        handles = _draw_personas(ax, personas)
        if runs.height:
            # Labels point inward (left of a run right of the centre), so they stay inside the axes.
            middle = (float(map_frame["x"].min()) + float(map_frame["x"].max())) / 2
            handles.append(_draw_runs(ax, runs, middle))
        if not map_frame.height:
            ax.text(0.5, 0.5, "no preferences to map", ha="center", va="center", transform=ax.transAxes)
        ax.axhline(0, color="#dddddd", linewidth=0.8, zorder=0)
        ax.axvline(0, color="#dddddd", linewidth=0.8, zorder=0)
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of the personas' vote variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
        ax.set_title(f"{title}\n{personas.height} personas, by social group", fontsize=11)
        if map_frame.height:
            fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    write_bytes(buffer.getvalue(), path)


def _draw_personas(ax: Axes, personas: pl.DataFrame) -> list[Line2D]:
    """The personas as dots: the largest groups in colours of their own, the rest in a grey "other" drawn first
    (so the named groups are on top of it). Returns their legend entries."""
    from matplotlib import colormaps

    sizes = (
        personas.with_columns(pl.col("group").fill_null("(no group)"))
        .group_by("group")
        .len()
        .sort(["len", "group"], descending=[True, False])
    )
    named = sizes["group"].to_list()[:_NAMED_GROUPS]
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]  # tab10's grey would read as "other"
    plotted = personas.with_columns(pl.col("group").fill_null("(no group)"))
    count = dict(sizes.iter_rows())
    other = plotted.filter(~pl.col("group").is_in(named))
    handles: list[Line2D] = []  # drawn by hand so every legend marker has one size, whatever the dot size
    if other.height:  # first, so the named groups are drawn on top of it
        ax.scatter(other["x"].to_numpy(), other["y"].to_numpy(), s=12, color=_OTHER, alpha=0.6, linewidths=0)
    for k, group in enumerate(named):
        mine = plotted.filter(pl.col("group") == group)
        color = palette[k % len(palette)]
        ax.scatter(mine["x"].to_numpy(), mine["y"].to_numpy(), s=14, color=color, alpha=0.7, linewidths=0)
        handles.append(_marker(f"{_short(group)} ({count[group]})", color))
    if other.height:
        handles.append(_marker(f"other: {other['group'].n_unique()} groups ({other.height})", _OTHER))
    return handles


def _draw_runs(ax: Axes, runs: pl.DataFrame, middle: float) -> Line2D:
    """The persona-free runs as stars, each labelled on the side of it toward ``middle`` (the map's centre, in
    x). Returns their legend entry."""
    ax.scatter(
        runs["x"].to_numpy(),
        runs["y"].to_numpy(),
        s=220,
        marker="*",
        color="black",
        edgecolors="white",
        linewidths=0.8,
        zorder=5,
    )
    handle = _marker("persona-free run", "black", "*", 11)
    for label, x, y in runs.select("point_id", "x", "y").iter_rows():
        inward = x > middle
        ax.annotate(
            _short(label),
            (x, y),
            xytext=(-9 if inward else 9, 7),
            textcoords="offset points",
            ha="right" if inward else "left",
            fontsize=9,
            fontweight="bold",
            zorder=6,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
    return handle


def dataset_map(out: Path, baselines: pl.DataFrame | None) -> pl.DataFrame:
    """The map of a build folder's preferences (every shard written so far) and the persona-free runs. Read a
    shard at a time down to one vote per (persona, pair), so memory follows the votes, not the shards' rows."""
    votes, groups = [], []
    for path in split_files(out / "data" / "preferences"):  # every split: the map places every persona
        shard = pl.read_parquet(path, columns=["persona_id", "persona_group", "pair_id", "chosen_id", "rejected_id"])
        votes.append(_votes(shard, "persona_id"))
        groups.append(shard.select("persona_id", "persona_group").drop_nulls().unique())
    if not votes:
        votes = [pl.DataFrame(schema={"persona_id": pl.String, "pair_id": pl.String, "vote": pl.Float64})]
        groups = [pl.DataFrame(schema={"persona_id": pl.String, "persona_group": pl.String})]
    # a persona's rows may span shards (a refresh's new pairs): one vote per (persona, pair) holds all the same
    group_of = pl.concat(groups).group_by("persona_id").agg(pl.col("persona_group").sort().first())
    return _map(pl.concat(votes), group_of, baselines)
