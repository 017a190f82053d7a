"""``polypref evaluate``: how much per-persona signal a build carries, measured on held-out personas.

Personalized reward models (FSPO, PAL, PersonalLLM) are judged on users they never saw: a few of the user's own
labels (shots), the rest predicted. A dataset is worth personalizing on only if those predictions beat what the
population alone gives. On the test personas (``splits``: by default the build's own test split, its
``output.splits``; the train split is what the predictors learn from) this reports the accuracy of:

- the global majority: per pair, the response most train personas chose;
- the majority of the persona's social group, and of each group attribute's value (the spec's ``groups.by``,
  found as the attributes whose values make up ``persona_group``), falling back to the global majority where
  no train persona of that group or value labelled the pair, or its votes are level;
- k-shot nearest personas: k of the persona's labels are shots, the rest queries; a query is predicted by the
  majority of the ``NEIGHBOURS`` train personas with a label on its pair that agree most with the persona on
  the shots (net agreement: same choice +1, other choice -1, no label 0; ties in the ranking go to the smaller
  ``persona_id``, level votes to the global majority). Beside it, the global majority on the same queries;
- k-shot attitudes: a per-persona model fit on the k shots alone, an ideal point per topic on the topic's
  answer scale (the population spec's order of stances): the point of a grid of eighths that the most shots on
  the topic prefer (a shot prefers the points nearer its chosen stance than its rejected one; of level best
  points, the one nearest the middle of their range: the centre of what the shots allow). A query on a topic
  with a shot is predicted as the stance nearer the point; a query on a topic without one, or equidistant, by
  the global majority (``attitude_covered`` counts the queries the model itself predicted);
- the simulator's truth (``matches_ground_truth``) where the judge is simulated;
- the headroom: the share of test labels that differ from the global majority (= 1 - its accuracy).

Each overall, per group, and on contested pairs (global majority share among train personas < ``CONTESTED``).

The predictors themselves are ``analysis.predictors``. Plain polars/numpy over the folder's Parquet; no Prefect.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from pyarrow import ArrowException

from polypref import splits
from polypref.analysis.predictors import (
    KS,
    NEIGHBOURS,
    STANCES,
    k_figures,
    k_shot,
    majority,
    share_true,
    stance_positions,
)
from polypref.build.state import BuildState
from polypref.errors import OutputError, PolyprefError
from polypref.population import load_spec
from polypref.population.spec import GROUP_SEPARATOR
from polypref.splits import split_fraction

CONTESTED = 0.8
_COLUMNS = ["pair_id", "persona_id", "chosen_id", "rejected_id", "persona_group", "persona_attributes"]


def read_preferences(folder: Path) -> pl.DataFrame:
    """The preferences of a finished build; OutputError naming the folder when it holds none."""
    if not folder.is_dir():
        raise PolyprefError(f"{folder} is not a folder")
    state = BuildState(folder)
    held = state.held()
    if held is None:
        raise OutputError(f"{folder} holds no polypref build; build one first: polypref build --out {folder}")
    if state.summary() is None or len(state.reports()) < held.num_shards:
        raise OutputError(f"{folder} holds no finished build; finish it first: polypref build --out {folder}")
    files = state.data_files("preferences")
    if not files:
        raise OutputError(f"{folder} holds a build with no preferences to evaluate")
    try:
        return read_preferences_files(files)
    except (OSError, pl.exceptions.PolarsError, ArrowException) as error:
        raise _damaged(state, error) from None


def _damaged(state: BuildState, error: Exception) -> OutputError:
    """A file of a finished build that does not read: what the push check finds wrong with the folder (only
    now, on failure: it reads every file), else the reader's own words."""
    problems = state.whole_build_problems() or [str(error).splitlines()[0]]
    return OutputError(
        f"{state.out} is damaged: {problems[0]}; rebuild it (polypref build --out {state.out} with its config "
        "repairs it from the judgment store)"
    )


def read_preferences_files(files: list[Path]) -> pl.DataFrame:
    """The columns evaluate reads, from a build's preferences files."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(files[0]).names)  # only these columns: never the texts
    return pl.read_parquet(files, columns=_COLUMNS + [c for c in ("matches_ground_truth", *STANCES) if c in present])


def spec_scales(folder: Path) -> dict[str, list[str]] | None:
    """Each topic's answer scale, in order, from the population spec the build's personas name (None when it
    cannot be read: a spec file moved away)."""
    state = BuildState(folder)
    personas = state.data_files("personas")
    if not personas:
        return None
    try:
        names = pl.read_parquet(personas[0], columns=["spec"])["spec"]
    except (OSError, pl.exceptions.PolarsError, ArrowException) as error:
        raise _damaged(state, error) from None
    try:
        spec = load_spec(names[0]) if len(names) else None
    except PolyprefError:
        return None
    return None if spec is None else {topic: list(spec.scale(topic)) for topic in spec.attitudes.items}


def build_splits(folder: Path) -> dict[str, float]:
    """The split shares the build in ``folder`` was made with (its summary records them; a build of a version
    before splits held out the default test share, which ``--test-share`` assumed)."""
    summary = BuildState(folder).summary()
    shares = None if summary is None else summary.split_shares()
    return shares if shares is not None else dict(splits.DEFAULT_SHARES)


def group_attributes(labels: pl.DataFrame) -> list[str]:
    """The attributes whose values, in order, make up ``persona_group`` for every persona."""
    personas = labels.unique("persona_id").select("persona_group", "persona_attributes")
    parts = personas["persona_group"].str.split(GROUP_SEPARATOR)
    widths = parts.list.len().unique().to_list()
    attrs = personas["persona_attributes"].struct.unnest()
    if len(widths) != 1:
        return []
    found = []
    for i in range(widths[0]):
        part = parts.list.get(i)
        match = next((a for a in attrs.columns if a not in found and (attrs[a] == part).fill_null(False).all()), None)
        if match is not None:
            found.append(match)
    return found


def evaluate(
    preferences: pl.DataFrame,
    test_share: float = 0.1,
    seed: int = 0,
    shares: Mapping[str, float] | None = None,
    scales: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The figures (see the module docstring) of a preferences table split by ``split_of(persona_id, test_share)``,
    or with ``shares`` (a build's ``output.splits``) by ``splits.assign``: test personas evaluated, train personas
    learnt from (validation ones left out); ``seed`` picks each test persona's shots. ``scales`` (topic -> its
    stances in order, spec_scales) places stances for the attitude model; without, it predicts nothing."""
    if shares is not None:
        test_share = shares.get("test", 0.0)
        if test_share <= 0:
            raise PolyprefError(
                f"the build holds no test split (output.splits: {dict(shares)}); pass --test-share to hold out "
                "personas of its train split"
            )
    labels, attributes = _labels(preferences, test_share, shares, scales or {})
    train, test = labels.filter(~pl.col("test")), labels.filter(pl.col("test"))
    if test.is_empty() or train.is_empty():
        raise PolyprefError(
            f"no {'test' if test.is_empty() else 'train'} personas at --test-share {test_share} "
            f"among {labels['persona_id'].n_unique()} personas; choose another share"
        )

    glob = majority(train, ["pair_id"]).rename({"majority": "global", "share": "global_share"})
    test, predictors = _predict(train, test, glob, attributes)
    rows = test.with_columns(
        [(p == pl.col("chosen_id")).alias(name) for name, p in predictors.items()]
        + [(pl.col("global") != pl.col("chosen_id")).alias("headroom")]
    )
    shots = k_shot(train, test, seed)

    def figures(keep: pl.Expr) -> dict[str, Any]:
        return _figures(rows.filter(keep), predictors, {k: frame.filter(keep) for k, frame in shots.items()})

    return {
        "test_share": test_share,
        "splits": dict(shares) if shares is not None else None,  # None: --test-share over the whole build
        "seed": seed,
        "neighbours": NEIGHBOURS,
        "contested_below": CONTESTED,
        "personas": {"train": train["persona_id"].n_unique(), "test": test["persona_id"].n_unique()},
        "labels": {"train": train.height, "test": test.height},
        "pairs": labels["pair_id"].n_unique(),
        "contested_pairs": glob.filter(pl.col("global_share") < CONTESTED).height,
        "group_attributes": attributes,
        "attitude_model": "ideal point per topic on the spec's scale, fit on the shots"
        if scales
        else "not measured: the population spec's scales could not be read",
        "overall": figures(pl.lit(True)),
        "contested": figures(pl.col("contested")),
        "groups": {g: figures(pl.col("persona_group") == g) for g in sorted(rows["persona_group"].unique())},
    }


def _labels(
    preferences: pl.DataFrame, test_share: float, shares: Mapping[str, float] | None, scales: Mapping[str, list[str]]
) -> tuple[pl.DataFrame, list[str]]:
    """One label per (persona, pair), with what the predictors read (stance positions, each group attribute's
    value, the pair's response ids in order) and whether its persona is a test one; train personas outside the
    build's train split (``shares``) left out. And the group attributes."""
    labels = preferences.unique(["persona_id", "pair_id"], keep="first", maintain_order=True)
    if "matches_ground_truth" not in labels.columns:
        labels = labels.with_columns(matches_ground_truth=pl.lit(None, pl.Boolean))
    if "topic" not in labels.columns:  # open items: no topic, no attitude model
        labels = labels.with_columns(topic=pl.lit(None, pl.String))
    labels = labels.with_columns(stance_positions(labels, scales))
    attributes = group_attributes(labels)
    labels = labels.with_columns(
        [pl.col("persona_attributes").struct.field(a).alias(f"attr:{a}") for a in attributes]
        + [
            pl.min_horizontal("chosen_id", "rejected_id").alias("first_id"),
            pl.max_horizontal("chosen_id", "rejected_id").alias("second_id"),
            pl.col("persona_id").map_elements(split_fraction, return_dtype=pl.Float64).lt(test_share).alias("test"),
        ]
    ).drop("persona_attributes")
    if shares is not None:  # the test rule is split_of's either way; train is the build's train split alone
        labels = (
            labels.with_columns(splits.split_column(labels["persona_id"], shares))
            .filter(pl.col("test") | (pl.col("split") == "train"))
            .drop("split")
        )
    return labels, attributes


def _predict(
    train: pl.DataFrame, test: pl.DataFrame, glob: pl.DataFrame, attributes: list[str]
) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
    """The test labels with each majority's prediction (``glob``: the global one, by pair), and the predictors
    by name: global, group, and each group attribute's majority, falling back to the global one."""
    test = test.join(glob, on="pair_id", how="left").with_columns(
        pl.col("global").fill_null(pl.col("first_id")),  # a pair no train persona labelled: a fixed guess
        contested=pl.col("global_share").fill_null(1.0) < CONTESTED,
    )
    predictors = {"global_majority": pl.col("global"), "group_majority": pl.col("by_group")}
    grouped = majority(train, ["pair_id", "persona_group"], level=False).rename({"majority": "by_group"})
    test = test.join(grouped.drop("share"), on=["pair_id", "persona_group"], how="left")
    test = test.with_columns(pl.col("by_group").fill_null(pl.col("global")))
    for a in attributes:
        col = f"attr:{a}"
        by = majority(train.filter(pl.col(col).is_not_null()), ["pair_id", col], level=False)
        test = test.join(by.drop("share").rename({"majority": f"by:{a}"}), on=["pair_id", col], how="left")
        test = test.with_columns(pl.col(f"by:{a}").fill_null(pl.col("global")))
        predictors[f"attribute:{a}"] = pl.col(f"by:{a}")
    return test, predictors


def _figures(part: pl.DataFrame, predictors: dict[str, pl.Expr], shots: dict[int, pl.DataFrame]) -> dict[str, Any]:
    """A slice's figures: ``part``, its test labels with each predictor's hit; ``shots``, its k-shot queries."""
    out: dict[str, Any] = {"personas": part["persona_id"].n_unique(), "labels": part.height}
    for name in predictors:
        out[name] = share_true(part[name])
    out["truth"] = share_true(part["matches_ground_truth"])
    out["headroom"] = share_true(part["headroom"])
    out["k_shot"] = {str(k): k_figures(frame, part, k) for k, frame in shots.items()}
    return out


def table(figures: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The accuracies as a table: a header and one row per slice (overall, contested pairs, each group), one
    column per predictor."""
    head = [
        "slice",
        "personas",
        "labels",
        "global",
        "group",
        *figures["group_attributes"],
        *(f"{k}-shot" for k in KS),
        f"{KS[-1]}-shot attitudes",
        "truth",
        "headroom",
    ]
    slices = [("overall", figures["overall"]), ("contested", figures["contested"]), *figures["groups"].items()]
    rows = []
    for name, fig in slices:
        cells = [name, str(fig["personas"]), str(fig["labels"]), _pct(fig["global_majority"])]
        cells += [_pct(fig["group_majority"]), *(_pct(fig[f"attribute:{a}"]) for a in figures["group_attributes"])]
        cells += [_pct(fig["k_shot"][str(k)]["nearest_personas"]) for k in KS]
        cells += [_pct(fig["k_shot"][str(KS[-1])].get("attitude_model"))]
        rows.append([*cells, _pct(fig["truth"]), _pct(fig["headroom"])])
    return head, rows


def held_out(figures: dict[str, Any]) -> str:
    """What was held out and how the k-shot predictor works, in one sentence."""
    held, labels = figures["personas"], figures["labels"]
    rule = "the build's test split, share" if figures.get("splits") else "test share"
    return (
        f"held out {held['test']} of {held['train'] + held['test']} personas ({rule} {figures['test_share']}), "
        f"{labels['test']} labels; {figures['contested_pairs']} of {figures['pairs']} pairs contested (global "
        f"majority < {figures['contested_below']:.0%}); k-shot: {figures['neighbours']} nearest personas by "
        "agreement on k shots"
    )


def describe(figures: dict[str, Any]) -> list[str]:
    """The figures as plain lines: what was held out, then the table, columns aligned."""
    head, rows = table(figures)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [held_out(figures), line(head), *(line(r) for r in rows)]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# The card measures personalization only where it is cheap next to the build: the k-shot search holds a
# (train personas x pairs) vote matrix and loops over the test personas' labels in Python.
CARD_MAX_CELLS = 20_000_000
CARD_MAX_LABELS = 2_000_000  # preferences read (their ids and stances: about 200 bytes each)
CARD_MAX_TEST_LABELS = 200_000


def for_card(
    folder: Path, shares: Mapping[str, float], scales: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The figures a finished build's card and Prefect artifact show: ``evaluate`` on its own test split
    (seed 0), or ``{"skipped": why}`` when it has none or is too large to measure beside the build."""
    if shares.get("test", 0.0) <= 0:
        return {"skipped": "the build holds out no personas (output.splits has no test share)"}
    files = BuildState(folder).data_files("preferences")
    if not files:
        return {"skipped": "the build has no preferences"}
    counts = (
        pl.scan_parquet(files)
        .select(pl.col("persona_id").n_unique().alias("personas"), pl.col("pair_id").n_unique().alias("pairs"))
        .collect()
        .row(0, named=True)
    )
    labels = splits.split_rows(folder, ["preferences"])["preferences"]
    too_many = sum(labels.values()) > CARD_MAX_LABELS or labels.get("test", 0) > CARD_MAX_TEST_LABELS
    if counts["personas"] * counts["pairs"] > CARD_MAX_CELLS or too_many:
        return {"skipped": f"too large to measure beside the build; run polypref evaluate {folder}"}
    try:
        return evaluate(read_preferences_files(files), seed=0, shares=shares, scales=scales)
    except PolyprefError as error:  # no train or no test persona with a kept preference
        return {"skipped": str(error)}


def markdown(figures: dict[str, Any]) -> str:
    """The figures as a Markdown table (overall, contested pairs, then each group), for the card and artifact."""
    if "skipped" in figures:
        return f"Not measured: {figures['skipped']}."
    head, rows = table(figures)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    sentence = held_out(figures)
    return "\n".join([sentence[0].upper() + sentence[1:] + ".", "", *lines])
