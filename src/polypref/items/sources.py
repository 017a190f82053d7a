"""Load items from any source: a shipped item set, a user's file or Hub-layout folder, or a Hub dataset.

``locate`` finds the files a source names, ``rows`` reads the rows of one file (Parquet, JSONL, ``.json``, ``.csv``),
``formats`` turns each row into an Item. This module ties them together: which rows of which files to read
(``segments``: split slices, and ``limit``: the first rows in source order, and nothing after them), the format, each
record as an Item (``collect``: rows skipped, repeats dropped), and the checks that span rows: unique ids, the topics
filter, and that the judge can judge what was read.

polypref's own JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}]}``;
``topic`` and the stances are optional (an open item). Its flat Parquet layout (one response per row, grouped into
items by ``item_id``) is ``flat``'s.

Ids: an absent or null id means "no id": an item gets a content hash of its topic and texts, a response one of its
prompt and text. Texts are kept exactly as given, never stripped or normalised; a text that is empty or only
whitespace is refused, and so are two responses with the same text in one item (no preference to state).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl

from polypref.errors import ConfigError
from polypref.items import formats, labels, rows
from polypref.items.collect import Drops, Skipped, check_unique_ids, to_items
from polypref.items.config import ItemsConfig
from polypref.items.formats import FLAT_COLUMNS
from polypref.items.layout import Layout
from polypref.items.locate import ItemSource, locate_source
from polypref.items.segments import Files, Record, read_plan, reader, schema_columns, source_name
from polypref.population.spec import SurveySpec
from polypref.records import Item

PARQUET_COLUMNS = FLAT_COLUMNS  # the flat Parquet layout's columns (kept under the name tests and users know)
log = logging.getLogger("polypref.items")


@dataclass(frozen=True)
class LoadedItems:
    items: tuple[Item, ...]
    source: ItemSource
    format: str
    columns: dict[str, str]  # field -> the source's column it was read from
    skipped: Skipped = field(default_factory=Skipped)
    # the source's own columns kept with each item (items.keep_columns, its prompt_id): collect.KEPT_KEY + each, as text
    kept: pl.DataFrame | None = None


def load_items(source: str, spec: SurveySpec, topics: list[str] | None = None) -> tuple[Item, ...]:
    """The items of a source named by a string alone (a shipped set, a file or a folder), all of them."""
    return read_items(ItemsConfig(source=source, topics=topics), spec).items


def read_items(config: ItemsConfig, spec: SurveySpec, seed: int = 0) -> LoadedItems:
    """Read, convert and check the items an ``ItemsConfig`` names; ConfigError names the file, row and column.
    ``seed`` no longer picks anything: a limit keeps the first rows (see ``segments``)."""
    # with a limit, a Hub source's files are fetched as their rows are read, so only those holding them come down
    located = locate_source(config.source, config.config, config.split, config.revision, config.limit is not None)
    name = source_name(located)
    opened = Files()
    plan = read_plan(located, opened, config, name)
    columns = schema_columns(opened, plan)
    # Parquet names every column in its schema; other files' rows may each have other keys, so they are told from
    # the keys of every row read (a first row without responses must not make the rest prompts-only)
    parquet = all(rows.is_parquet(s.file) for s in plan)
    layout = formats.detect(name, columns, config.format, config.columns) if parquet else None
    read = reader(located, layout, config.limit, opened, plan)
    if layout is None:
        keys = dict.fromkeys(columns)
        for record in read():  # a first pass for the keys only
            if isinstance(record.data, rows.Unreadable) and config.on_error == "fail":
                raise record.data.error  # as soon as it is met, not as a format without the columns it needs
            keys.update(dict.fromkeys(record.data if isinstance(record.data, dict) else ()))
        columns = list(keys)
        layout = formats.detect(name, columns, config.format, config.columns)
    if config.topics is not None:
        read = _on_topics(read, layout, config.topics)
    kept = _kept_columns(layout, columns, config.keep_columns)
    # polypref's own format reads every key (or refuses it); another tool's rows may hold columns no field reads
    unread = (
        ()
        if layout.name == "polypref"
        else tuple(c for c in columns if c not in layout.columns.values() and c not in kept)
    )
    skipped = Skipped()
    try:
        drops = Drops(config.on_error == "skip", config.drop_duplicates, skipped)
        items, seen = to_items(name, layout, read, spec, len(located.files) == 1, drops, kept)
        items.unread = unread
        if not drops.duplicates:  # else no repeat is left: each was dropped as it was read
            check_unique_ids(name, read, items)
        if config.topics is not None:
            unknown = sorted(set(config.topics) - {i.topic for i in items})
            if unknown:
                raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
        if not items:
            left = f" ({len(skipped)} rows skipped: {_counted(skipped.counts)})" if skipped else ""
            raise ConfigError(name, [("", f"no items{left}")])
        if skipped:
            log.warning("%s: %d rows skipped (%s)", name, len(skipped), _counted(skipped.counts))
        warning = labels.check_labels(name, layout, items, seen)
        if warning:
            log.warning(warning)
    except ConfigError as e:
        if e.source == "config" or not unread:
            raise
        raise ConfigError(e.source, [*e.problems, _unread_problem(layout, unread)]) from None
    return LoadedItems(items, located, layout.name, layout.columns, skipped, items.kept)


def _kept_columns(layout: Layout, found: Sequence[str], asked: Sequence[str]) -> tuple[str, ...]:
    """The source columns kept with each item: those ``items.keep_columns`` names (each must be one of the
    source's), then the source's own ``prompt_id`` when no field reads it (ultrafeedback_binarized has one)."""
    if asked and layout.flat:
        reason = "polypref's flat Parquet layout has only its own columns, which every row publishes already"
        raise ConfigError("config", [("items.keep_columns", reason)])
    missing = [c for c in asked if c not in found]
    if missing:
        reason = f"{missing} {'is not a column' if len(missing) == 1 else 'are not columns'} of the source"
        raise ConfigError("config", [("items.keep_columns", f"{reason}; its columns: {list(found)}")])
    own = [c for c in ("prompt_id",) if c in found and c not in layout.columns.values() and layout.name != "polypref"]
    return tuple(dict.fromkeys([*asked, *own]))


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common())


def _unread_problem(layout: Layout, unread: Sequence[str]) -> tuple[str, str]:
    read = list(dict.fromkeys(layout.columns.values()))
    return (
        "columns not read",
        f"{list(unread)} (the {layout.name} format read {read}); set items.format and items.columns to read them",
    )


def _on_topics(
    read: Callable[[], Iterator[Record]], layout: Layout, topics: list[str]
) -> Callable[[], Iterator[Record]]:
    """The records on ``topics``, told by their topic before they are converted: a row the filter leaves out is
    never checked against the population spec, which need not have an item on its topic. A row that is not an
    object is kept, to be refused as one."""
    column = layout.columns.get("topic")

    def kept() -> Iterator[Record]:
        for record in read():
            data = record.data
            if not isinstance(data, dict) or (column is not None and data.get(column) in topics):
                yield record

    return kept


def check_judgeable(items: tuple[Item, ...], backend: str, source: str) -> None:
    """Refuse, before any work, items nothing can judge: prompts without responses, and for the simulated judge
    (which decides from stances) items without a topic and stances. Items as ``read_items`` gave them are named
    by file and row; others by id."""
    bare = [index for index, i in enumerate(items) if len(i.responses) < 2]
    if bare:
        reason = (
            f"has a prompt but no responses to judge ({len(bare)} of {len(items)} items): give each prompt at least "
            "two responses (formats: polypref, pairwise, completions, arena), or have them generated "
            "(docs/llm-judges.md: generating responses)"
        )
        raise ConfigError(source, [(_named(items, bare[0]), reason), *_unread(items)])
    if backend != "simulated":
        return
    open_items = [index for index, i in enumerate(items) if not i.annotated]
    if open_items:
        what = "no topic" if items[open_items[0]].topic is None else "responses without a stance"
        reason = (
            f"has {what} ({len(open_items)} of {len(items)} items are open); the simulated judge decides from "
            "stances on the survey's answer scales: annotate the items (polypref annotate) or judge with an LLM "
            "backend (judge.backend: vllm or openai)"
        )
        raise ConfigError(source, [(_named(items, open_items[0]), reason), *_unread(items)])


def _named(items: tuple[Item, ...], index: int) -> str:
    """How an error names an item: the file and line or row it was read from, else its id."""
    origins = getattr(items, "origins", None)
    if origins is not None and index < len(origins):
        return f"item at {origins[index]}"
    return f"item {items[index].id}"


def _unread(items: tuple[Item, ...]) -> list[tuple[str, str]]:
    """The source's columns no field read, as a last problem: the labels or texts the user expected may be there."""
    unread = getattr(items, "unread", ())
    return [("columns not read", f"{list(unread)}: set items.format and items.columns to read them")] if unread else []
