"""A STUB of the Hugging Face Hub's HTTP API, for tests and benchmarks: not the Hub, not a mirror.

It serves, from a folder on disk, what huggingface_hub 2.4 and ``datasets.load_dataset`` need to READ dataset
repos: repo info by revision, tree listings (paginated, recursive), paths-info, refs, commits, and file
downloads (HEAD and GET, Range, ``X-Repo-Commit``/``ETag``/``X-Linked-*`` headers, the Hub's ``X-Error-Code``
errors, gated and private repos). Point a client at it with ``HF_ENDPOINT=<url>`` (see ``fixtures.hub_env``:
huggingface_hub and datasets read their endpoint and offline flag at import, so tests patch their constants).

Seed it from Python::

    stub = HubStub(tmp_path)
    sha = stub.add_commit("org/name", {"README.md": "...", "data/train-00000.parquet": Path("local.parquet")},
                          tags=["v1"])
    stub.set_gated("org/name", token="hf_allowed")
    with stub:                       # serves on a free port in a background thread
        ... HF_ENDPOINT=stub.url ...
        stub.log.count("resolve", "GET")

or run it on its own: ``python -m tests.hubstub --root DIR [--port PORT] [--token T] [--read-only-token T]``
prints its URL and serves DIR, with T as a token that may write (or only read).
Storage is described in ``store.py``; the routes in ``app.py``.

Writing: ``HfApi(endpoint=stub.url, token=T)`` with ``stub.add_token(T)`` can ``create_repo``, ``create_commit`` /
``upload_folder`` (every file goes inline, "regular": no LFS or Xet server, with hf_xet installed or not),
``create_tag`` / ``delete_tag``, ``create_branch`` / ``delete_branch``; ``DatasetCard.push_to_hub`` too. Each
accepted commit is one line of ``ROOT/commits.jsonl`` (``stub.pushes()``). ``stub.fail_next_commits(n, 503,
retry_after=1)`` makes the next n commit requests fail.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import uvicorn

from tests.hubstub.app import PAGE_SIZE, Faults, RequestLog, create_app
from tests.hubstub.store import Access, FileContent, Store, StubError

__all__ = ["Access", "Faults", "HubStub", "RequestLog", "Store", "StubError"]


class HubStub:
    """Storage, request log and app of one stub; ``start()`` (or ``with stub:``) serves it in a thread."""

    def __init__(self, root: Path | str, *, tokens: Iterable[str] = (), read_only_tokens: Iterable[str] = ()):
        """``tokens`` may write, ``read_only_tokens`` only read (``add_token``): without a known token every
        write is refused, so a stub run on its own needs them to be pushed to."""
        self.store = Store(root)
        for token in tokens:
            self.add_token(token)
        for token in read_only_tokens:
            self.add_token(token, write=False)
        self.log = RequestLog()
        self.page_size = PAGE_SIZE  # lower it to exercise tree pagination
        self.faults = Faults()
        self.app = create_app(self.store, self.log, lambda: self.page_size, self.faults)
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> Path:
        return self.store.root

    # ---- seeding -----------------------------------------------------------------------------------------

    def add_commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent],
        *,
        revision: str = "main",
        tags: Iterable[str] = (),
        message: str = "update",
        replace: bool = False,
    ) -> str:
        """Commit ``files`` (repo path -> bytes, text, a local Path, or None to delete) on branch ``revision``
        on top of its current files (``replace=True``: instead of them); tag it with ``tags``. Returns the sha."""
        sha = self.store.commit(repo_id, files, revision=revision, message=message, replace=replace)
        for tag in tags:
            self.store.set_ref(repo_id, tag, sha, kind="tags")
        return sha

    def create_branch(self, repo_id: str, branch: str, revision: str = "main") -> str:
        sha = self.store.resolve(repo_id, revision)
        self.store.set_ref(repo_id, branch, sha, kind="branches")
        return sha

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        sha = self.store.resolve(repo_id, revision)
        self.store.set_ref(repo_id, tag, sha, kind="tags")
        return sha

    def set_gated(self, repo_id: str, token: str | None = None, *, tokens: Iterable[str] = ()) -> None:
        """Gate the repo: metadata and listing stay public, files need a granted token."""
        self.store.set_access(repo_id, Access(gated=True, tokens=(*([token] if token else []), *tokens)))

    def set_private(self, repo_id: str, token: str | None = None, *, tokens: Iterable[str] = ()) -> None:
        """Make the repo private: without a granted token it does not exist."""
        self.store.set_access(repo_id, Access(private=True, tokens=(*([token] if token else []), *tokens)))

    def set_public(self, repo_id: str) -> None:
        self.store.set_access(repo_id, Access())

    def add_token(self, token: str, *, write: bool = True) -> None:
        """A valid token that was granted nothing (a logged-in user); unknown tokens get 401 everywhere. It may
        write (create repos, commit, tag) to any repo it can see unless ``write=False`` (then writes get 403)."""
        self.store.add_token(token, write=write)

    # ---- writes: inspection and fault injection ---------------------------------------------------------------

    def pushes(self, repo_id: str | None = None) -> list[dict]:
        """Commits accepted through the write routes (the lines of ROOT/commits.jsonl), oldest first."""
        return [p for p in self.store.pushes() if repo_id in (None, p["repo"])]

    def fail_next_commits(self, n: int = 1, status: int = 500, retry_after: float | None = None) -> None:
        """The next ``n`` commit requests (POST .../commit/REV) answer ``status`` without committing, with a
        ``Retry-After`` header if ``retry_after`` is given. They are logged as route "commit" with that status."""
        self.faults.fail_next_commits(n, status, retry_after)

    def fail_next(
        self, route: str, n: int = 1, status: int = 500, retry_after: float | None = None, after: int = 0
    ) -> None:
        """After ``after`` requests of ``route`` (a RequestLog route name) pass, the next ``n`` answer ``status``
        without doing anything."""
        self.faults.fail_next(route, n, status, retry_after, after)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ---- serving -----------------------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve in a daemon thread; returns the URL once the server accepts connections."""
        if self._server is not None:
            return self.url or ""
        sock = bind(host, port)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("hub stub did not start")
            time.sleep(0.005)
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._server = self._thread = None
        self.url = None

    def __enter__(self) -> HubStub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock
