"""Leases on a build's jobs (its shards and its persona-free run), so that workers in other processes or on other
machines sharing the build folder never judge the same job at once, and a dead worker's job is taken over.

A lease is a file ``<out>/.polypref/claims/<job>.lease`` made with O_EXCL (atomic on local file systems and
NFSv3+). Its holder touches it every ``ttl / 4`` seconds; a lease untouched for ``ttl`` seconds belongs to a
worker that died, and the first worker to rename it away (a rename succeeds once) takes the job. What the dead
worker had saved stays in the judgment store, so it loses at most its micro-batch in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

PERSONA_FREE = "persona-free"  # the job that judges every pair without a persona (pipeline.persona_free_votes)


class ShardClaims:
    def __init__(self, root: Path, ttl: float):
        self.root = root
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _path(self, job: str) -> Path:
        return self.root / f"{job}.lease"

    def claim(self, job: str) -> bool:
        """Take ``job`` unless a live worker holds it; True when this worker now holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(job)
        if self._create(path):
            return self._hold(job)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:  # released between our two calls: try once more
            return self._create(path) and self._hold(job)
        if age < self.ttl:
            return False
        stale = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, stale)  # only one of the workers that saw it stale gets here
        except FileNotFoundError:
            return False
        if time.time() - stale.stat().st_mtime < self.ttl:  # another worker took it over after our look: give back
            with contextlib.suppress(FileExistsError):
                os.link(stale, path)
            stale.unlink(missing_ok=True)
            return False
        stale.unlink(missing_ok=True)
        return self._create(path) and self._hold(job)

    def _create(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"holder": self.holder, "since": time.time()}, f)
        return True

    def _hold(self, job: str) -> bool:
        with self._lock:
            self._held.add(job)
            if self._beat is None:
                self._beat = threading.Thread(target=self._heartbeat, name="polypref-lease", daemon=True)
                self._beat.start()
        return True

    def holder_of(self, job: str) -> str | None:
        try:
            return str(json.loads(self._path(job).read_text())["holder"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self, job: str) -> None:
        with self._lock:
            self._held.discard(job)
        if self.holder_of(job) == self.holder:
            self._path(job).unlink(missing_ok=True)

    @contextlib.contextmanager
    def holding(self, job: str) -> Iterator[None]:
        try:
            yield
        finally:
            self.release(job)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            with self._lock:
                held = list(self._held)
            for job in held:
                with contextlib.suppress(OSError):
                    os.utime(self._path(job))

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = list(self._held)
        for job in held:
            self.release(job)
