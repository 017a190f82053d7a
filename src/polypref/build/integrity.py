"""Whether a build folder's published files still hold the bytes the build wrote: the digests a shard's report
records for its files, those of files.json for the rest, and what makes a folder one whole, finished build.

Plain functions over what ``build.state`` reads from the folder; it is the one that calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polypref.build.documents import ShardReport, Summary
from polypref.build.state_file import StateFile
from polypref.files import TMP_PREFIX, file_sha256
from polypref.splits import FILE_NAME

SHARD_CONFIGS = ("judgments", "preferences")  # a file each per split per shard, recorded in the shard's report


def is_temp(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


def file_problem(path: Path, recorded: Any) -> str | None:
    """What is wrong with a published file, given the record made when it was written (None: nothing)."""
    sha = recorded.get("sha256") if isinstance(recorded, dict) else getattr(recorded, "sha256", None)
    if not sha:
        return f"{path}: no digest was recorded when it was written"
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        return f"{path} is missing"
    except OSError as e:
        return f"{path} does not read ({e.strerror or e})"
    return None if actual == sha else f"{path} does not hold the bytes the build wrote (damaged or changed)"


def shard_files(out: Path, index: int, report: ShardReport) -> dict[Path, Any] | None:
    """The files a shard's report records (its judgments and preferences, a file per split), by path; None
    when the report names none of this shard's files for a config, or a file that is not one of them (a
    report by an older version, keyed by config, or an edited one)."""
    found: dict[Path, Any] = {}
    for name, entry in report.files.items():
        folder, _, file = str(name).rpartition("/")
        match = FILE_NAME.fullmatch(file)
        if match is None or int(match["index"]) != index or folder not in {f"data/{c}" for c in SHARD_CONFIGS}:
            return None
        found[out / folder / file] = entry
    configs = {path.parent.name for path in found}
    return found if configs == set(SHARD_CONFIGS) else None


def shard_problem(out: Path, index: int, report: ShardReport) -> str | None:
    files = shard_files(out, index, report)
    if files is None:
        return "its report records no digest of its files (an older version wrote it)"
    for path, entry in files.items():
        if (problem := file_problem(path, entry)) is not None:
            return problem
    return None


def whole_build_problems(
    out: Path,
    state: StateFile | None,
    summary: Summary | None,
    reports: Mapping[int, ShardReport],
    recorded: Mapping[str, Any],
) -> list[str]:
    """Why the folder ``out`` is not one whole, finished build exactly as written (empty: it is), given its
    state, its summary, its shard reports and the records of its other files (files.json)."""
    if state is None or summary is None:
        return [f"{out} holds no finished polypref build"]
    reports = {i: r for i, r in reports.items() if i < state.num_shards}
    done = [i for i, r in reports.items() if r.done]
    if summary.run_id != state.run_id or len(done) < state.num_shards:
        return [
            f"its latest run ({state.run_id}) stopped before it finished: {len(done)} of {state.num_shards} shards "
            "are done"
        ]
    problems = []
    expected = set()
    for index, report in sorted(reports.items()):
        expected |= set(shard_files(out, index, report) or {})
        if (problem := shard_problem(out, index, report)) is not None:
            problems.append(f"shard {index}: {problem}")
    for name, entry in sorted(recorded.items()):
        expected.add(out / name)
        if (problem := file_problem(out / name, entry)) is not None:
            problems.append(problem)
    data = out / "data"
    found = {p for p in data.rglob("*") if not p.is_dir()} if data.is_dir() else set()
    for path in sorted(found - expected):
        what = "a temp file a killed writer left" if is_temp(path) else "not a file this build wrote"
        problems.append(f"{path} is {what}")
    return problems
