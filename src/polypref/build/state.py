"""The on-disk state of a build: the only code that lists or reads what a build keeps in its output folder.

An output folder holds the published files (``README.md``, ``data/<config>/<split>-NNNNN.parquet``) and the
build's own state under ``.polypref/``: ``state.json`` (the settings' fingerprint and the layout's parts),
``layout/`` (the content digests of the personas and of each part's pairs), ``store/<judge key>/`` (every
judgment made, see ``build.store``), ``shards/<shard>.json`` (a finished shard's report; written last, so it
marks completion), ``summary.json`` and ``fidelity.json``. Every write is temp file + rename, so a killed process
leaves at most ``.tmp-*`` files behind; they are never read as data and are removed when a build resumes.

The pipeline, the progress bar, the card and the push all go through this module, so they agree on what is there;
they get typed documents (``build.documents``: ShardReport, Summary; ``build.state_file.StateFile``) and read their
attributes. Modules only it calls hold its parts: ``build.state_file`` (what state.json must hold, the layout's
files) and ``build.integrity`` (whether published files still hold the bytes the build wrote)."""

from __future__ import annotations

import errno
import json
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from polypref.build import integrity
from polypref.build.documents import JudgeRecord, ShardReport, Summary
from polypref.build.integrity import is_temp
from polypref.build.layout import Layout
from polypref.build.lock import LOCK_NAME
from polypref.build.state_file import (
    JUDGE_KEY,
    About,
    StateFile,
    covers,
    layout_state,
    part_of,
    read_digests,
    read_state,
    write_digests,
)
from polypref.build.store import JudgmentStore
from polypref.dataset.configs import CONFIGS
from polypref.errors import OutputError
from polypref.files import TMP_PREFIX, WrittenFile, write_bytes, write_json
from polypref.splits import FILE_NAME

STATE_DIR = ".polypref"
_SHARD_NAME = FILE_NAME  # train-, validation- or test-NNNNN.parquet (splits.py)
MAP_PNG = "map.png"  # the preference-space map the card shows, beside it
FIDELITY_FILE = "fidelity.json"  # the fidelity check's figures, under the key of what they depend on


class BuildState:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.root = self.out / STATE_DIR

    # -- the build ----------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def held(self) -> StateFile | None:
        """The build this folder holds, or None if it holds none; a damaged state file is an OutputError."""
        return read_state(self.state_file)

    def write(self, state: StateFile) -> None:
        write_json(state.to_json(), self.state_file)

    # -- the layout (which shards hold which personas and pairs) ----------------------------------
    @property
    def layout_dir(self) -> Path:
        return self.root / "layout"

    def write_layout(self, fingerprint: str, layout: Layout, num_units: int, about: About) -> None:
        """Save a layout whose parts all have a run; the digests first, state.json (which points at them) last.
        ``about``: what ``polypref status`` reports besides (the judge's store key, model and prices)."""
        write_digests(self.layout_dir / "personas.parquet", layout.personas)
        for k, part in enumerate(layout.parts):  # written again each time: a killed run may have left others
            write_digests(self.layout_dir / f"part-{k:05d}.parquet", part.pairs)
        self.write(layout_state(fingerprint, layout, num_units, about))

    def read_layout(self, fingerprint: str) -> Layout | None:
        """The layout of the build this folder holds, if it was built with the same settings and every file of
        it reads back; None otherwise (the build is then laid out anew, from the judgment store)."""
        try:
            state = self.held()
        except OutputError:
            return None
        if state is None or state.fingerprint != fingerprint or not state.parts:
            return None
        try:
            personas = read_digests(self.layout_dir / "personas.parquet")
            parts = []
            for k, entry in enumerate(state.parts):
                pairs = read_digests(self.layout_dir / f"part-{k:05d}.parquet")
                if len(pairs) != entry.pairs:
                    return None
                parts.append(part_of(entry, pairs))
        except (OSError, ValueError, pa.ArrowException, pl.exceptions.PolarsError):
            return None
        if not covers(parts, len(personas)):  # files of two runs (one killed between writes): not a layout
            return None
        return Layout(personas, tuple(parts))

    def added_personas(self) -> int:
        """Personas that refreshes added past population.size (0 for a folder without a readable build)."""
        try:
            state = self.held()
        except OutputError:
            return 0
        return state.added_personas if state else 0

    def unfinished(self) -> bool:
        """Whether the folder's latest run stopped before every shard was written."""
        try:
            state = self.held()
        except OutputError:
            return False
        return state is not None and len([i for i in self.reports() if i < state.num_shards]) < state.num_shards

    # -- the judgment store -------------------------------------------------------------------------
    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    def store(self, judge_key: str) -> JudgmentStore:
        if not re.fullmatch(JUDGE_KEY, judge_key):
            raise OutputError(f"{self.state_file}: judge key {judge_key!r} is not a store folder's name")
        return JudgmentStore(self.store_dir / judge_key)

    def stored_judgments(self) -> int:
        """Judgments in the store, of every judge this folder has used."""
        if not self.store_dir.is_dir():
            return 0
        return sum(JudgmentStore(p).count() for p in self.store_dir.iterdir() if p.is_dir())

    def clear_build(self, keep_store: bool) -> None:
        """Remove the published files and the build's state, keeping the judgment store unless told not to.

        state.json goes last: a clear cut short leaves a folder that still says it holds a build, so the next
        run clears it again instead of refusing it as a stranger's."""
        # answers paid for: judgments, generated responses, pending batches, the fidelity check (keyed by content)
        # the fidelity answers stay either way: an overwrite's check discarded its judge's own before asking again
        paid = {self.store_dir.name, self.generated_dir.name, self.judge_dir.name, FIDELITY_FILE}
        kept = {LOCK_NAME, self.fidelity_dir.name} | (paid if keep_store else set())
        targets = [self.out / "data", self.out / "README.md", self.out / MAP_PNG]
        if self.root.is_dir():
            targets += sorted(p for p in self.root.iterdir() if p.name not in kept and p != self.state_file)
        for target in [*targets, self.state_file]:
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    def write_summary(self, summary: Summary) -> None:
        write_json(summary.to_json(), self.summary_file)

    @property
    def summary_file(self) -> Path:
        """Written last by a build that finished: its figures, and what the card says."""
        return self.root / "summary.json"

    @property
    def skipped_file(self) -> Path:
        """The source rows the build left out (items.on_error: skip, items.drop_duplicates), one JSON per line."""
        return self.root / "skipped.jsonl"

    def write_skipped(self, rows: Sequence[dict[str, Any]]) -> None:
        """The run's skipped rows; none: no file, so one left by an earlier run never describes this one."""
        if not rows:
            self.skipped_file.unlink(missing_ok=True)
            return
        lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_bytes("".join(lines).encode("utf-8"), self.skipped_file)

    def summary(self) -> Summary | None:
        """The summary of the latest finished run, if it reads."""
        try:
            return Summary.from_json(_json(self.summary_file))
        except ValueError:
            return None

    def holds_nothing(self) -> bool:
        """Whether the folder is missing or empty but for the lock a command holds on it (build.lock) and the
        fidelity check's answers, which a build saves before it prepares the folder."""
        if not self.out.exists():
            return True
        inside = list(self.out.iterdir())
        quiet = {LOCK_NAME, self.fidelity_dir.name}
        return inside in ([], [self.root]) and all(p.name in quiet for p in inside and self.root.iterdir())

    @property
    def fidelity_dir(self) -> Path:
        """The fidelity check's answers, keyed by content (fidelity.store): kept through a rebuild, like judgments."""
        return self.root / "fidelity"

    def read_fidelity(self, key: str) -> dict[str, Any] | None:
        """The fidelity figures saved (as ``fidelity.results.FidelityReport.as_json`` gives them) if saved under
        ``key``; None: none yet, damaged, or saved for another judge or other personas (asked again)."""
        saved = _json(self.root / FIDELITY_FILE)
        report = saved.get("report") if isinstance(saved, dict) and saved.get("key") == key else None
        return report if isinstance(report, dict) else None

    def write_fidelity(self, key: str, report: dict[str, Any]) -> None:
        write_json({"key": key, "report": report}, self.root / FIDELITY_FILE)

    @property
    def judge_dir(self) -> Path:
        """Where a judge keeps what it must resume from (pending Batch API batches)."""
        return self.root / "judge"

    @property
    def claims_dir(self) -> Path:
        """Leases of the workers judging this build's jobs (runners.claims)."""
        return self.root / "claims"

    def write_judge_record(self, record: JudgeRecord) -> None:
        write_json(record.to_json(), self.root / "judge-info.json")

    def judge_record(self) -> JudgeRecord | None:
        """The judge the workers ran (None: none finished the persona-free run, or the file does not read)."""
        try:
            return JudgeRecord.from_json(_json(self.root / "judge-info.json"))
        except ValueError:
            return None

    # -- shards -------------------------------------------------------------------------------------
    @property
    def generated_dir(self) -> Path:
        """Generated responses (prompts-only sources), saved as they finish so a rerun asks only for the rest."""
        return self.root / "generated"

    def report_path(self, index: int) -> Path:
        return self.root / "shards" / f"{index:05d}.json"

    def read_report(self, index: int) -> ShardReport | None:
        """A finished shard's report; an unreadable one (damaged, or written by another version) counts as not
        finished: the shard is redone."""
        try:
            return ShardReport.from_json(_json(self.report_path(index)))
        except ValueError:
            return None

    def write_report(self, report: ShardReport) -> None:
        write_json(report.to_json(), self.report_path(report.index))

    def forget_damaged_shards(self) -> dict[int, str]:
        """Finished shards whose files are missing or no longer hold the bytes written (damaged on disk, cut
        short by a full one, edited): their reports are removed, so the build makes them again from the store
        instead of publishing them as they are. Returns what was wrong, by shard."""
        forgotten = {}
        for index, report in self.reports().items():
            if (problem := integrity.shard_problem(self.out, index, report)) is not None:
                self.report_path(index).unlink(missing_ok=True)
                forgotten[index] = problem
        return forgotten

    def file_problem(self, path: Path, recorded: Any) -> str | None:
        """What is wrong with a published file, given the record made when it was written (None: nothing)."""
        return integrity.file_problem(path, recorded)

    # -- files written outside shards (personas, weights, review, map): digests by path ---------------------
    @property
    def files_record(self) -> Path:
        return self.root / "files.json"

    def recorded_files(self) -> dict[str, dict[str, Any]]:
        """Digest and rows of each data file that no shard report covers, by its path in the folder."""
        return data if isinstance(data := _json(self.files_record), dict) else {}

    def record_files(self, written: dict[Path, WrittenFile]) -> None:
        recorded = self.recorded_files() | {
            path.relative_to(self.out).as_posix(): {"sha256": w.sha256, "rows": w.rows} for path, w in written.items()
        }
        write_json(recorded, self.files_record)

    def drop_unwritten(self, configs: Sequence[str], written: Iterable[Path]) -> list[Path]:
        """Remove the data files of ``configs`` (made anew at each build's end) that this build's end did not
        write, and their records: what an earlier end wrote for a split that now has no persona, or for a
        config now turned off (episodes). Returns what went."""
        keep = set(written)
        gone = [p for c in configs for p in self.data_files(c) if p not in keep]
        for path in gone:
            path.unlink(missing_ok=True)
        if gone:
            names = {p.relative_to(self.out).as_posix() for p in gone}
            write_json({k: v for k, v in self.recorded_files().items() if k not in names}, self.files_record)
        return gone

    def whole_build_problems(self) -> list[str]:
        """Why the folder is not one whole, finished build exactly as written (empty: it is). What a push checks
        before sending anything: the latest run finished, every file it wrote is there with the bytes it wrote,
        and data/ holds nothing else."""
        state = self.held()  # a damaged state file is an OutputError that says so
        summary = self.summary()
        return integrity.whole_build_problems(self.out, state, summary, self.reports(), self.recorded_files())

    def reports(self) -> dict[int, ShardReport]:
        """Every readable shard report, by shard index."""
        found: dict[int, ShardReport] = {}
        for path in sorted((self.root / "shards").glob("[0-9]*.json")):
            if path.stem.isdigit() and (report := self.read_report(int(path.stem))) is not None:
                found[int(path.stem)] = report
        return found

    # -- published files ----------------------------------------------------------------------------
    def data_files(self, config: str) -> list[Path]:
        folder = self.out / "data" / config
        return sorted(p for p in folder.glob("*.parquet") if not is_temp(p)) if folder.is_dir() else []

    def published_as_messages(self) -> bool | None:
        """Whether the folder's preference shards publish texts as messages (None: it holds none that read)."""
        for path in self.data_files("preferences")[:1]:
            try:
                chosen = pq.read_schema(path).field("chosen").type
            except (OSError, KeyError, pa.ArrowException):
                return None
            return pa.types.is_list(chosen) or pa.types.is_large_list(chosen)
        return None

    def download_size(self, config: str) -> int:
        return sum(p.stat().st_size for p in self.data_files(config))

    def data_bytes(self, config: str, split: str | None = None) -> int:
        """Uncompressed size of a config's rows (the card's ``num_bytes``), from the Parquet footers; of one split's
        files only when ``split`` is given."""
        total = 0
        for path in self.data_files(config):
            if split is not None and ((match := FILE_NAME.fullmatch(path.name)) is None or match["split"] != split):
                continue
            meta = pq.read_metadata(path)
            total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return total

    def clean_temp_files(self) -> int:
        """Remove what killed writers left behind; returns how many files went."""
        removed = 0
        for folder in [self.out, *(self.out / "data" / c for c in CONFIGS), self.root, *self._state_folders()]:
            if folder.is_dir():
                for path in folder.iterdir():
                    if is_temp(path) and path.is_file():
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def _state_folders(self) -> list[Path]:
        folders = [self.root / "shards", self.layout_dir, self.generated_dir, self.store_dir]
        if self.store_dir.is_dir():
            folders += [p for p in self.store_dir.iterdir() if p.is_dir()]
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
    def progress_units(self, store: JudgmentStore | None = None, baseline: int = 0) -> int:
        """Units judged so far: those of finished shards, or (given the build's store and how many judgments
        it held when the build began) those stored since, whichever is more.

        Safe to call while a build writes (files appear by rename; a vanishing one is skipped).
        """
        units = sum(r.units - r.unanswered for r in self.reports().values())  # a damaged one is not read
        return max(units, store.count() - baseline) if store is not None else units


def _json(path: Path) -> Any:
    """A JSON file's content; None when it is missing or does not read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
