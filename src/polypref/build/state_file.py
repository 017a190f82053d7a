"""state.json and layout/: what a build folder's state file must hold for a build to resume from it, and how a
layout (its parts, and the content digests of its personas and pairs) is written there and read back.

Only ``build.state`` calls this module: it is the one reader and writer of a build folder's ``.polypref/``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from polypref.build.layout import Layout, Part
from polypref.errors import OutputError
from polypref.files import write_parquet

# a store folder's name: state.json is read from a folder a user may have edited or been handed, and a key like
# "../../etc" would send `status` and the build outside it
JUDGE_KEY = r"^[A-Za-z0-9_-]*$"


class _PartEntry(BaseModel):
    personas: tuple[int, int]
    pairs: int = Field(ge=1)  # how many: the digests are in layout/part-NNNNN.parquet
    personas_per_shard: int = Field(ge=1)
    pairs_per_shard: int | None = Field(None, ge=1)
    first_shard: int = Field(ge=0)
    run_id: str
    created_at: AwareDatetime


class _JudgeEntry(BaseModel):
    backend: str | None = None
    model: str | None = None
    prices: dict[str, float] | None = None


class _StateFile(BaseModel):
    """What state.json must hold for a build to resume from it."""

    model_config = ConfigDict(extra="allow")
    fingerprint: str
    run_id: str
    created_at: AwareDatetime
    num_shards: int = Field(ge=0)
    num_units: int = Field(ge=0)
    parts: list[_PartEntry] = Field(default_factory=list)
    added_personas: int = Field(0, ge=0)  # past population.size, by refreshes (--add-personas)
    judge_key: str = Field("", pattern=JUDGE_KEY)  # the store namespace of the judge that built it
    judge: _JudgeEntry = Field(default_factory=_JudgeEntry)  # what `polypref status` reports


def read_state(state_file: Path) -> dict[str, Any] | None:
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
        return _StateFile.model_validate(state).model_dump(mode="json")
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


def layout_state(fingerprint: str, layout: Layout, num_units: int, about: dict[str, Any]) -> dict[str, Any]:
    """What state.json holds for a layout whose parts all have a run; ``about``: what ``polypref status``
    reports besides (the judge's store key, model and prices)."""
    latest = layout.parts[-1] if layout.parts else None
    return about | {
        "fingerprint": fingerprint,
        "run_id": latest.run_id if latest else "",
        "created_at": latest.created_at if latest else datetime.now(UTC).isoformat(),
        "num_shards": layout.num_shards,
        "num_units": num_units,
        "parts": [
            {
                "personas": list(p.personas),
                "pairs": len(p.pairs),
                "personas_per_shard": p.personas_per_shard,
                "pairs_per_shard": p.pairs_per_shard,
                "first_shard": p.first_shard,
                "run_id": p.run_id,
                "created_at": p.created_at,
            }
            for p in layout.parts
        ],
    }


def part_of(entry: dict[str, Any], pairs: tuple[str, ...]) -> Part:
    """A part as state.json records it (``entry``, of a state ``read_state`` validated), with its pairs."""
    return Part(
        personas=tuple(entry["personas"]),  # type: ignore[arg-type]
        pairs=pairs,
        personas_per_shard=entry["personas_per_shard"],
        pairs_per_shard=entry.get("pairs_per_shard"),
        first_shard=entry["first_shard"],
        run_id=entry["run_id"],
        created_at=datetime.fromisoformat(entry["created_at"]).isoformat(),  # as written
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
