"""The on-disk state of a build: the only code that lists or reads what a build keeps in its output folder.

An output folder holds the published files (``README.md``, ``data/<config>/train-*.parquet``) and the build's
own state under ``.polypref/``: ``state.json`` (what is being built), ``partial/<shard>/`` (micro-batches of
a shard still being judged), ``shards/<shard>.json`` (a finished shard's report; written last, so it marks
completion) and ``summary.json``. Every write is temp file + rename, so a killed process leaves at most
``.tmp-*`` files behind; they are never read as data and are removed when a build resumes.

The pipeline, the progress bar and the card all go through this module, so they agree on what is there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from polypref.dataset.writer import CONFIGS, TMP_PREFIX, write_json, write_parquet
from polypref.errors import OutputError

STATE_DIR = ".polypref"
_SHARD_NAME = re.compile(r"train-\d{5}-of-\d{5}\.parquet")


class _StateFile(BaseModel):
    """What state.json must hold for a build to resume from it."""

    model_config = ConfigDict(extra="allow")
    fingerprint: str
    run_id: str
    created_at: AwareDatetime
    num_shards: int = Field(ge=1)
    num_units: int = Field(ge=0)


def _is_temp(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


class BuildState:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.root = self.out / STATE_DIR

    # -- the build ----------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def read(self) -> dict[str, Any] | None:
        """The build this folder holds, or None if it holds none; a damaged state file is an OutputError."""
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise OutputError(f"{self.state_file}: cannot read the build state ({_reason(e)})") from None
        try:
            state = json.loads(text)
        except json.JSONDecodeError as e:
            raise OutputError(
                f"{self.state_file}: damaged build state (invalid JSON: {e.msg}); "
                "pass --overwrite to rebuild, or choose another --out"
            ) from None
        try:
            return _StateFile.model_validate(state).model_dump(mode="json")
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors())
            raise OutputError(
                f"{self.state_file}: damaged build state ({problems[:300]}); "
                "pass --overwrite to rebuild, or choose another --out"
            ) from None

    def write(self, state: dict[str, Any]) -> None:
        write_json(state, self.state_file)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.root / "summary.json")

    @property
    def judge_dir(self) -> Path:
        """Where a judge keeps what it must resume from (pending Batch API batches)."""
        return self.root / "judge"

    # -- shards -------------------------------------------------------------------------------------
    @property
    def generated_dir(self) -> Path:
        """Generated responses (prompts-only sources), saved as they finish so a rerun asks only for the rest."""
        return self.root / "generated"

    def report_path(self, index: int) -> Path:
        return self.root / "shards" / f"{index:05d}.json"

    def read_report(self, index: int) -> dict[str, Any] | None:
        """A finished shard's report; an unreadable one counts as not finished (the shard is redone)."""
        try:
            report = json.loads(self.report_path(index).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def write_report(self, index: int, report: dict[str, Any]) -> None:
        write_json(report, self.report_path(index))

    def reports(self) -> dict[int, dict[str, Any]]:
        """Every readable shard report, by shard index."""
        found: dict[int, dict[str, Any]] = {}
        for path in sorted((self.root / "shards").glob("[0-9]*.json")):
            if path.stem.isdigit() and (report := self.read_report(int(path.stem))) is not None:
                found[int(path.stem)] = report
        return found

    # -- micro-batches of unfinished shards ---------------------------------------------------------
    def partial_dir(self, index: int) -> Path:
        return self.root / "partial" / f"{index:05d}"

    def micro_batch_files(self, index: int) -> list[Path]:
        folder = self.partial_dir(index)
        return sorted(p for p in folder.glob("*.parquet") if not _is_temp(p)) if folder.is_dir() else []

    def saved_micro_batches(self, index: int) -> list[pl.DataFrame]:
        frames = []
        for path in self.micro_batch_files(index):
            try:
                frames.append(pl.read_parquet(path))
            except Exception as e:  # written atomically by us: a bad one was put there or damaged on disk
                raise OutputError(
                    f"{path}: not a readable micro-batch ({str(e)[:200]}); delete it to judge its units again"
                ) from None
        return frames

    def save_micro_batch(self, index: int, frame: pl.DataFrame, row_group_rows: int) -> None:
        if frame.height:
            write_parquet(frame.to_arrow(), self.partial_dir(index) / f"{frame['unit'][0]:09d}.parquet", row_group_rows)

    def clear_partial(self, index: int) -> None:
        folder = self.partial_dir(index)
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()

    # -- published files ----------------------------------------------------------------------------
    def data_files(self, config: str) -> list[Path]:
        folder = self.out / "data" / config
        return sorted(p for p in folder.glob("*.parquet") if not _is_temp(p)) if folder.is_dir() else []

    def download_size(self, config: str) -> int:
        return sum(p.stat().st_size for p in self.data_files(config))

    def data_bytes(self, config: str) -> int:
        """Uncompressed size of a config's rows (the card's ``num_bytes``), from the Parquet footers."""
        total = 0
        for path in self.data_files(config):
            meta = pq.read_metadata(path)
            total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return total

    def clean_temp_files(self) -> int:
        """Remove what killed writers left behind; returns how many files went."""
        removed = 0
        for folder in [self.out, *(self.out / "data" / c for c in CONFIGS), self.root, *self._state_folders()]:
            if folder.is_dir():
                for path in folder.iterdir():
                    if _is_temp(path) and path.is_file():
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def _state_folders(self) -> list[Path]:
        folders = [self.root / "shards", self.root / "partial", self.generated_dir]
        partial = self.root / "partial"
        if partial.is_dir():
            folders += [p for p in partial.iterdir() if p.is_dir()]
        return folders

    def foreign_files(self) -> list[Path]:
        """Files in data/ that no build writes: a resumed build must not merge them into its dataset."""
        return [p for c in CONFIGS for p in self.data_files(c) if not _SHARD_NAME.fullmatch(p.name)]

    def check_writable(self) -> None:
        """Fail before any work if the folder cannot be made or written (a read-only disk, a path below a
        file). Leaves nothing behind."""
        if self.out.is_symlink() and not self.out.exists():
            raise OutputError(f"{self.out} is a symbolic link to a missing folder ({self.out.readlink()})")
        existing = self.out
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            what = "is a file, not a folder" if existing == self.out else f"is below {existing}, which is a file"
            raise OutputError(f"{self.out} {what}")
        probe = existing / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as e:
            hint = "the file system is read-only" if e.errno == errno.EROFS else (e.strerror or str(e))
            raise OutputError(f"cannot write to {existing}: {hint}; choose another --out") from None

    # -- progress -----------------------------------------------------------------------------------
    def progress_units(self) -> int:
        """Units judged so far: those of finished shards plus saved micro-batches of unfinished ones.

        Safe to call while a build writes (files appear by rename; a vanishing one is skipped).
        """
        reports = self.reports()
        units = 0
        for report in reports.values():
            with contextlib.suppress(TypeError, ValueError):  # a damaged report is redone; count it as nothing
                units += int(report.get("units", 0)) - int(report.get("unanswered", 0))
        partial = self.root / "partial"
        if partial.is_dir():
            for folder in partial.iterdir():
                if not folder.name.isdigit() or int(folder.name) in reports:
                    continue
                for path in self.micro_batch_files(int(folder.name)):
                    try:
                        units += pq.read_metadata(path).num_rows
                    except (OSError, pa.ArrowException):
                        continue
        return units


def _reason(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(error, "strerror", None) or str(error)
