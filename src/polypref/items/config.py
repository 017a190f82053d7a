"""The ``items`` section of the build config: which items to read and how to pair them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt

from polypref.items.formats import FormatName
from polypref.strict import StrictModel


class ItemsConfig(StrictModel):
    source: str = Field(
        "gss_spending",
        description="A shipped item set in data/items/ (by name), a .jsonl, .parquet, .json or .csv file, a folder "
        "in Hub layout, or a Hub dataset: hf://datasets/ORG/NAME",
    )
    format: FormatName = Field(
        "auto", description="auto (told from the columns) | polypref | pairwise | completions | arena | prompts"
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Field -> the source's column for it, e.g. {prompt: instruction}"
    )
    config: str | None = Field(None, description="Config (subset) of a Hub dataset or Hub-layout folder")
    split: str = Field(
        "train",
        description="Split to read, or a split expression as datasets writes them: train+test, train[:1000], "
        "train[10%:20%] (a file's one split is train)",
    )
    revision: str | None = Field(None, description="Branch, tag or commit of a Hub dataset (default: main)")
    limit: StrictInt | None = Field(
        None,
        ge=1,
        description="Judge the first this many items, in source order (None = all): nothing after them is read, "
        "and a source that grows keeps them",
    )
    topics: list[str] | None = Field(None, min_length=1, description="Keep only these topics (None = all)")
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="A source row that cannot be an item: fail (refuse the source before any work, naming the file, "
        "row and column) or skip (leave it out, counted by reason in the card and listed in .polypref/skipped.jsonl; "
        "a repeated item is then dropped too)",
    )
    keep_columns: list[str] = Field(
        default_factory=list,
        description="Source columns to carry into the preferences, judgments and pairs configs (ids, metadata), "
        "under source_columns, each as text; the source's own prompt_id is kept without being named",
    )
    drop_duplicates: bool = Field(
        False,
        description="Keep the first of items that repeat one read before (the same id, or without ids the same "
        "texts) and drop the rest, counted and listed like skipped rows, instead of refusing the source",
    )
    pairing: Literal["all", "random"] = "all"
    pairs_per_prompt: int = Field(3, ge=1, description="With pairing: random, pairs drawn per prompt")
