"""state.json and layout/: what a build folder's state file must hold for a build to resume from it, and how a
layout (its parts, and the content digests of its personas and pairs) is written there and read back.

``build.state`` reads and writes the file (it is the one reader and writer of a build folder's ``.polypref/``);
others use these models of what it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_serializer

from polypref.build.layout import Layout, Part
from polypref.errors import OutputError
from polypref.files import write_parquet

# a store folder's name: state.json is read from a folder a user may have edited or been handed, and a key like
# "../../etc" would send `status` and the build outside it
JUDGE_KEY = r"^[A-Za-z0-9_-]*$"


class PartEntry(BaseModel):
    """One part of the layout: a run's personas and pairs, and where its shards start."""

    personas: tuple[int, int]
    pairs: int = Field(ge=1)  # how many: the digests are in layout/part-NNNNN.parquet
    personas_per_shard: int = Field(ge=1)
    pairs_per_shard: int | None = Field(None, ge=1)
    first_shard: int = Field(ge=0)
    run_id: str
    created_at: AwareDatetime

    @field_serializer("created_at")
    def _as_written(self, value: datetime) -> str:
        return value.isoformat()


class JudgeEntry(BaseModel):
    backend: str | None = None
    model: str | None = None
    prices: dict[str, float] | None = None


class StateFile(BaseModel):
    """What state.json must hold for a build to resume from it. ``from_json`` checks it; ``to_json`` gives the
    dict written, as earlier versions wrote it (keys this version does not know are kept)."""

    model_config = ConfigDict(extra="allow")
    fingerprint: str
    run_id: str
    created_at: AwareDatetime
    num_shards: int = Field(ge=0)
    num_units: int = Field(ge=0)
    parts: list[PartEntry] = Field(default_factory=list)
    added_personas: int = Field(0, ge=0)  # past population.size, by refreshes (--add-personas)
    judge_key: str = Field("", pattern=JUDGE_KEY)  # the store namespace of the judge that built it
    judge: JudgeEntry = Field(default_factory=JudgeEntry)  # what `polypref status` reports

    @field_serializer("created_at")
    def _as_written(self, value: datetime) -> str:
        return value.isoformat()

    @classmethod
    def from_json(cls, data: Any) -> StateFile:
        """ValidationError if ``data`` is not a state this version can resume from."""
        return cls.model_validate(data)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_state(state_file: Path) -> StateFile | None:
    """The build ``state_file`` describes, or None if there is none; a damaged state file is an OutputError."""
    try:
        text = state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise OutputError(f"{state_file}: cannot read the build state ({_reason(e)})") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as e:
        raise OutputError(
            f"{state_file}: damaged build state (invalid JSON: {e.msg}); "
            "pass --overwrite to rebuild, or choose another --out"
        ) from None
    try:
        return StateFile.from_json(state)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors())
        raise OutputError(
            f"{state_file}: damaged build state ({problems[:300]}); "
            "pass --overwrite to rebuild, or choose another --out"
        ) from None


def _reason(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(error, "strerror", None) or str(error)


def layout_state(fingerprint: str, layout: Layout, num_units: int, about: About) -> StateFile:
    """What state.json holds for a layout whose parts all have a run; ``about``: what ``polypref status``
    reports besides (the judge's store key, model and prices)."""
    latest = layout.parts[-1] if layout.parts else None
    return StateFile(
        fingerprint=fingerprint,
        run_id=latest.run_id or "" if latest else "",
        created_at=latest.created_at if latest and latest.created_at else datetime.now(UTC),  # type: ignore[arg-type]
        num_shards=layout.num_shards,
        num_units=num_units,
        parts=[
            PartEntry(
                personas=p.personas,
                pairs=len(p.pairs),
                personas_per_shard=p.personas_per_shard,
                pairs_per_shard=p.pairs_per_shard,
                first_shard=p.first_shard,
                run_id=p.run_id or "",
                created_at=p.created_at,  # type: ignore[arg-type]
            )
            for p in layout.parts
        ],
        added_personas=about.added_personas,
        judge_key=about.judge_key,
        judge=about.judge,
    )


@dataclass(frozen=True)
class About:
    """What state.json says of a build besides its layout, for ``polypref status``."""

    judge_key: str  # the store namespace of the judge that built it
    judge: JudgeEntry
    added_personas: int = 0


def part_of(entry: PartEntry, pairs: tuple[str, ...]) -> Part:
    """A part as state.json records it, with its pairs."""
    return Part(
        personas=entry.personas,
        pairs=pairs,
        personas_per_shard=entry.personas_per_shard,
        pairs_per_shard=entry.pairs_per_shard,
        first_shard=entry.first_shard,
        run_id=entry.run_id,
        created_at=entry.created_at.isoformat(),  # as written
    )


def covers(parts: list[Part], personas: int) -> bool:
    """Whether parts tile the personas: each part's range starts at 0 (new pairs for the personas so far) or
    where the personas so far end, and the last of them ends at ``personas``."""
    end = 0
    for part in parts:
        start, stop = part.personas
        if start not in (0, end) or stop < start or (start == 0 and stop != end and end != 0):
            return False
        end = max(end, stop)
    return end == personas


def write_digests(path: Path, digests: tuple[str, ...]) -> None:
    write_parquet(pa.table({"digest": pa.array(digests, pa.string())}), path, 1_000_000)


def read_digests(path: Path) -> tuple[str, ...]:
    return tuple(pq.read_table(path, columns=["digest"]).column("digest").to_pylist())
