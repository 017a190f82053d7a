"""One writer per build folder: a kernel lock (``flock``) on ``<out>/.polypref/lock``.

Two builds on one folder mixed their shards and both exited 0, so every command that writes a folder (build,
refresh, push, a served run) holds its lock for as long as it works there. The kernel drops the lock when the
holding process ends, however it ends (kill -9 included), so a lock is never stale; the file's text only names
the holder for the message a second command prints. The workers of one build (work pools, Ray) write shards
the head assigned them and take no lock: the head holds it for them.

Reentrant within a process: the CLI takes the lock before planning and the flow it runs (in the same process)
takes it again, as does a push at the end of a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from polypref.errors import OutputError
from polypref.files import reported
from polypref.safety.secrets import scrub

LOCK_NAME = "lock"
POLL_SECONDS = 0.2

_held: dict[str, list[int]] = {}  # real path of a lock file -> [file descriptor, depth] held by this process
_guard = threading.Lock()


class FolderInUse(OutputError):
    """Another process holds the folder's lock (and the caller did not ask to wait)."""


def lock_path(out: Path) -> Path:
    return out / ".polypref" / LOCK_NAME


@contextlib.contextmanager
def folder_lock(out: str | Path, wait: bool = False, command: str = "build") -> Iterator[None]:
    """Hold ``out``'s lock for the block: at once, or (``wait``) once the process that holds it ends.

    Folders this made for the lock file are removed again when the block ends if they hold nothing else: a
    command refused for bad input leaves nothing behind.
    """
    out = Path(out)
    made = _missing_folders(out)
    path = lock_path(out)
    key = _acquire(path, out, wait, command)
    try:
        yield
    finally:
        _release(key, out, made)


def holder(out: str | Path) -> dict[str, object] | None:
    """Who holds ``out``'s lock now (pid, command, since), or None if nobody does. Takes no lock itself."""
    path = lock_path(Path(out))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:  # refused while anyone holds it, this process included (flock locks belong to open files)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _missing_folders(out: Path) -> list[Path]:
    """The folders a lock file at ``out`` will create, innermost first."""
    missing, folder = [], out / ".polypref"
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _acquire(path: Path, out: Path, wait: bool, command: str) -> str:
    with reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
    while True:
        with reported(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd, path, out, wait, command):
                os.close(fd)
                continue  # the file was replaced while we waited: lock the one that is there now
        except BaseException:
            os.close(fd)
            raise
        break
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_describe_self()).encode(), 0)
    with _guard:
        _held[key] = [fd, 1]
    return key


def _try_lock(fd: int, path: Path, out: Path, wait: bool, command: str) -> bool:
    """Lock ``fd``; False if the file it opened is no longer the one at ``path`` (removed by its last holder)."""
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            who = _read_holder(fd)
            if not wait:
                raise FolderInUse(
                    f"{out} is in use by another polypref command ({describe_holder(who)}); one command writes a build "
                    f"folder at a time: wait for it to end, or pass --wait to {command} once it has"
                ) from None
            if not told:
                print(f"waiting for {out}: in use by {describe_holder(who)}", file=sys.stderr, flush=True)
                told = True
            time.sleep(POLL_SECONDS)
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _release(key: str, out: Path, made: list[Path]) -> None:
    with _guard:
        entry = _held[key]
        entry[1] -= 1
        if entry[1]:
            return
        del _held[key]
    fd = entry[0]
    try:
        if made and _only_lock_inside(out / ".polypref"):  # unlinked while locked: a waiter that opened it retries
            Path(key).unlink(missing_ok=True)
            for folder in made:  # innermost first; one that holds anything else stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
        else:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _only_lock_inside(folder: Path) -> bool:
    try:
        return [p.name for p in folder.iterdir()] == [LOCK_NAME]
    except OSError:
        return False


def _describe_self() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "command": scrub(" ".join(["polypref", *sys.argv[1:]])),  # a --set value may be a credential
        "since": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


def _read_holder(fd: int) -> dict[str, object] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(who: dict[str, object] | None) -> str:
    if not who or "pid" not in who:
        return "a process that is starting"
    return f"pid {who['pid']}: {who.get('command', '?')}, since {who.get('since', '?')}"
