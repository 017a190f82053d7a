"""Load items: a shipped item set (data/items/NAME.jsonl) or user files.

JSONL: one item per line, ``{"id", "topic", "prompt", "responses": [{"id", "text", "stance"}, ...]}``.
Parquet: one response per row, columns ``item_id, topic, prompt, response_id, response, stance``.
``stance`` is a label on the topic's answer scale in the population spec; ``id`` fields are optional
(a content hash is used when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polypref import assets
from polypref.errors import ConfigError
from polypref.population.spec import SurveySpec
from polypref.records import Item, Response, content_hash

PARQUET_COLUMNS = ("item_id", "topic", "prompt", "response_id", "response", "stance")


class _ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    text: str = Field(min_length=1)
    stance: str


class _ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    topic: str
    prompt: str = Field(min_length=1)
    responses: list[_ResponseIn] = Field(min_length=2)


def resolve_items_path(source: str) -> Path:
    """A shipped item set by name (data/items/NAME.jsonl) or a path to a .jsonl or .parquet file."""
    if Path(source).suffix in (".jsonl", ".parquet"):
        return Path(source)
    return assets.path("data", "items", f"{source}.jsonl")


def load_items(source: str, spec: SurveySpec, topics: list[str] | None = None) -> tuple[Item, ...]:
    """Read items and check them against the spec's topics and scales; ConfigError names file and line."""
    path = resolve_items_path(source)
    if not path.exists():
        shipped = sorted(p.stem for p in assets.path("data", "items").glob("*.jsonl"))
        raise ConfigError(str(path), [("", f"items file not found (shipped item sets: {shipped})")])
    if path.suffix == ".jsonl":
        raw = _read_jsonl(path)
    elif path.suffix == ".parquet":
        raw = _read_parquet(path)
    else:
        raise ConfigError(str(path), [("", "items must be a .jsonl or .parquet file")])
    items = [_validate(path, where, record, spec) for where, record in raw]
    if topics is not None:
        unknown = sorted(set(topics) - {i.topic for i in items})
        if unknown:
            raise ConfigError("config", [("items.topics", f"no items on topics {unknown}")])
        items = [i for i in items if i.topic in topics]
    if not items:
        raise ConfigError(str(path), [("", "no items")])
    ids = [i.id for i in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(str(path), [("id", f"duplicate item ids {duplicates[:5]}")])
    return tuple(items)


def _read_jsonl(path: Path) -> list[tuple[str, object]]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise ConfigError(str(path), [(f"line {number}", f"invalid JSON: {e.msg}")]) from None
    return records


def _read_parquet(path: Path) -> list[tuple[str, object]]:
    try:
        frame = pl.read_parquet(path)
    except Exception as e:
        raise ConfigError(str(path), [("", f"cannot read Parquet: {e}")]) from None
    missing = [c for c in PARQUET_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(str(path), [("", f"missing columns {missing}; expected {list(PARQUET_COLUMNS)}")])
    records = []
    for (item_id,), group in frame.group_by("item_id", maintain_order=True):
        first = group.row(0, named=True)
        responses = [
            {"id": r["response_id"], "text": r["response"], "stance": r["stance"]} for r in group.iter_rows(named=True)
        ]
        records.append(
            (
                f"item_id {item_id}",
                {
                    "id": str(item_id),
                    "topic": first["topic"],
                    "prompt": first["prompt"],
                    "responses": responses,
                },
            )
        )
    return records


def _validate(path: Path, where: str, record: object, spec: SurveySpec) -> Item:
    try:
        parsed = _ItemIn.model_validate(record)
    except ValidationError as e:
        raise ConfigError(
            str(path),
            [(f"{where}: " + ".".join(str(p) for p in err["loc"]), err["msg"]) for err in e.errors()],
        ) from None
    if parsed.topic not in spec.attitudes.items:
        raise ConfigError(
            str(path),
            [
                (
                    f"{where}: topic",
                    f"{parsed.topic!r} is not a topic of population spec {spec.name} "
                    f"(topics: {sorted(spec.attitudes.items)})",
                )
            ],
        )
    scale = spec.scale(parsed.topic)
    responses = []
    for index, r in enumerate(parsed.responses):
        if r.stance not in scale:
            raise ConfigError(str(path), [(f"{where}: responses.{index}.stance", f"{r.stance!r} is not on {scale}")])
        responses.append(
            Response(
                id=r.id or content_hash(parsed.prompt, r.text),
                text=r.text,
                stance=r.stance,
                position=scale.index(r.stance) / (len(scale) - 1),
            )
        )
    if len({r.id for r in responses}) != len(responses):
        raise ConfigError(str(path), [(f"{where}: responses", "duplicate response ids")])
    return Item(
        id=parsed.id or content_hash(parsed.topic, parsed.prompt),
        topic=parsed.topic,
        prompt=parsed.prompt,
        responses=tuple(responses),
    )
