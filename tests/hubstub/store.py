"""On-disk storage of the Hub stub: repos made of immutable commit snapshots, refs in a small JSON file.

Layout (one folder per repo, so deleting a repo is deleting a folder)::

    ROOT/datasets/ORG/NAME/
        repo.json              {"private": false, "gated": false, "tokens": [...], "created": "..."}
        refs.json              {"branches": {"main": SHA}, "tags": {"v1": SHA}}
        commits/SHA.json       {"id", "parents", "title", "message", "date",
                                "files": {path: {"oid", "sha256", "size", "lfs"}}}
        objects/AB/SHA256      file contents, stored once per content

A commit snapshot lists every file of the repo at that commit, so reading a revision is one JSON file and
nothing is ever rewritten: new commits add a snapshot and move a ref. The write routes use ``create_repo`` and
``push`` (a commit on an existing branch, checked and logged to ``ROOT/commits.jsonl``, one JSON line per commit:
``{"repo", "repo_type", "revision", "commit", "parent", "added", "deleted", "message"}``).

Tokens: ``ROOT/tokens.json`` lists valid tokens (``add_token``), ``ROOT/readonly_tokens.json`` those of them that may
not write; tokens granted on a private or gated repo are valid too. Any valid, non-read-only token may write to a
repo it can see (the stub has no users or namespaces).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

# The .gitattributes the Hub puts in the first commit of a new repo (abridged).
GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n"
    for suffix in (".arrow", ".bin", ".gz", ".npy", ".npz", ".parquet", ".pt", ".safetensors", ".tar", ".zip", ".zst")
)
REPO_TYPES = {"dataset": "datasets", "model": "models", "space": "spaces"}  # repo type -> folder and URL prefix
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# Stored through LFS on the Hub (its default .gitattributes), and so is anything of 10 MB or more.
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".gz", ".zip", ".zst", ".tar", ".npy", ".npz", ".pt", ".safetensors")
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_POINTER_SIZE = 134

FileContent = bytes | str | Path | None  # bytes, text (UTF-8), a local file to copy, or None to delete


class StubError(Exception):
    """A request the Hub would refuse; ``code`` is the Hub's X-Error-Code value."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    files: dict[str, dict[str, Any]]  # path -> {"oid": git blob sha1, "sha256", "size", "lfs": bool}

    def folders(self) -> set[str]:
        return {str(p) for path in self.files for p in PurePosixPath(path).parents if str(p) != "."}


@dataclass(frozen=True)
class Access:
    private: bool = False
    gated: bool = False
    tokens: tuple[str, ...] = ()  # tokens allowed to read a private or gated repo


class Store:
    """All repos under ``root``. Thread-safe: one lock guards every write."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._lock = threading.RLock()

    # ---- reading -------------------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
            raise StubError(400, None, f"invalid repo id {repo_id!r}")
        return self.root / REPO_TYPES[repo_type] / parts[0] / parts[1]

    def exists(self, repo_id: str, repo_type: str = "dataset") -> bool:
        return (self.repo_dir(repo_id, repo_type) / "refs.json").is_file()

    def repos(self, repo_type: str = "dataset") -> list[str]:
        base = self.root / REPO_TYPES[repo_type]
        return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in base.glob("*/*/refs.json"))

    def refs(self, repo_id: str, repo_type: str = "dataset") -> dict[str, dict[str, str]]:
        return _read_json(self.repo_dir(repo_id, repo_type) / "refs.json", {"branches": {}, "tags": {}})

    def access(self, repo_id: str, repo_type: str = "dataset") -> Access:
        data = _read_json(self.repo_dir(repo_id, repo_type) / "repo.json", {})
        return Access(bool(data.get("private")), bool(data.get("gated")), tuple(data.get("tokens", ())))

    def tokens(self) -> set[str]:
        """Every token the stub knows (any other bearer token is 'invalid credentials', as on the Hub)."""
        found = set(_read_json(self.root / "tokens.json", []))
        for repo_type, folder in REPO_TYPES.items():
            if (self.root / folder).is_dir():
                for repo_id in self.repos(repo_type):
                    found.update(self.access(repo_id, repo_type).tokens)
        return found

    def readonly_tokens(self) -> set[str]:
        return set(_read_json(self.root / "readonly_tokens.json", []))

    def resolve(self, repo_id: str, revision: str | None, repo_type: str = "dataset") -> str:
        """The commit sha a branch, tag, ``refs/heads/X``, ``refs/tags/X`` or full sha names."""
        refs = self.refs(repo_id, repo_type)
        revision = revision or "main"
        for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs[kind]:
                return refs[kind][revision[len(prefix) :]]
        if revision in refs["branches"]:
            return refs["branches"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        if SHA_RE.match(revision) and (self.repo_dir(repo_id, repo_type) / "commits" / f"{revision}.json").is_file():
            return revision
        raise StubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def commit_info(self, repo_id: str, sha: str, repo_type: str = "dataset") -> Commit:
        return Commit(**_read_json(self.repo_dir(repo_id, repo_type) / "commits" / f"{sha}.json", None))

    def blob(self, repo_id: str, sha256: str, repo_type: str = "dataset") -> Path:
        return self.repo_dir(repo_id, repo_type) / "objects" / sha256[:2] / sha256

    def history(self, repo_id: str, sha: str, repo_type: str = "dataset") -> list[Commit]:
        """Commits reachable from ``sha``, newest first (first parents only, as `git log --first-parent`)."""
        out = []
        while sha:
            commit = self.commit_info(repo_id, sha, repo_type)
            out.append(commit)
            sha = commit.parents[0] if commit.parents else ""
        return out

    # ---- writing -------------------------------------------------------------------------------------------

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent],
        *,
        revision: str = "main",
        message: str = "update",
        replace: bool = False,
        repo_type: str = "dataset",
    ) -> str:
        """Commit ``files`` (path -> content; None deletes) on branch ``revision``, creating repo and branch as
        needed. ``replace=True`` starts from an empty tree instead of the branch's files. Returns the sha."""
        with self._lock:
            repo = self.repo_dir(repo_id, repo_type)
            refs = self.refs(repo_id, repo_type)
            parent = refs["branches"].get(revision)
            tree = {} if replace or parent is None else dict(self.commit_info(repo_id, parent, repo_type).files)
            for path, content in files.items():
                _check_path(path)
                if content is None:
                    tree.pop(path, None)
                else:
                    tree[path] = self._store_object(repo, content)
                    tree[path]["lfs"] = lfs_path(path, tree[path]["size"])
            date = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            title, _, body = message.partition("\n")
            record = {"parents": [parent] if parent else [], "title": title, "message": body.strip(), "date": date}
            record["files"] = dict(sorted(tree.items()))
            sha = hashlib.sha1(json.dumps(record, sort_keys=True).encode() + str(time.monotonic_ns()).encode())
            record["id"] = sha.hexdigest()
            _write_json(repo / "commits" / f"{record['id']}.json", record)
            if not (repo / "repo.json").exists():
                _write_json(repo / "repo.json", {"private": False, "gated": False, "tokens": [], "created": date})
            refs["branches"][revision] = record["id"]
            _write_json(repo / "refs.json", refs)
            return record["id"]

    def set_ref(self, repo_id: str, name: str, sha: str | None, *, kind: str = "tags", repo_type: str = "dataset"):
        """Point branch or tag ``name`` (kind "branches" or "tags") at ``sha``; None deletes it."""
        with self._lock:
            refs = self.refs(repo_id, repo_type)
            if sha is None:
                refs[kind].pop(name, None)
            else:
                self.commit_info(repo_id, sha, repo_type)  # must exist
                refs[kind][name] = sha
            _write_json(self.repo_dir(repo_id, repo_type) / "refs.json", refs)

    def set_access(self, repo_id: str, access: Access, repo_type: str = "dataset") -> None:
        with self._lock:
            path = self.repo_dir(repo_id, repo_type) / "repo.json"
            data = _read_json(path, {})
            data.update(private=access.private, gated=access.gated, tokens=list(access.tokens))
            _write_json(path, data)

    def add_token(self, token: str, *, write: bool = True) -> None:
        """A valid token with access to no repo in particular (a logged-in user without grants); ``write=False``
        makes it read-only (writes get 403)."""
        with self._lock:
            _write_json(self.root / "tokens.json", sorted({*_read_json(self.root / "tokens.json", []), token}))
            readonly = self.readonly_tokens()
            readonly = readonly - {token} if write else readonly | {token}
            _write_json(self.root / "readonly_tokens.json", sorted(readonly))

    def create_repo(self, repo_id: str, *, private: bool = False, token: str | None = None, repo_type: str = "dataset"):
        """A new repo as the Hub makes it: branch main with one commit holding ``.gitattributes``; a private one
        readable by ``token`` only. Raises 409 if it exists."""
        with self._lock:
            if self.exists(repo_id, repo_type):
                raise StubError(409, None, f"You already created this {repo_type} repo")
            access = Access(private=private, tokens=(token,) if private and token else ())
            self.set_access(repo_id, access, repo_type)
            return self.commit(
                repo_id, {".gitattributes": GITATTRIBUTES}, message="initial commit", repo_type=repo_type
            )

    def push(
        self,
        repo_id: str,
        revision: str,
        added: Mapping[str, bytes],
        deleted: Iterable[str] = (),
        deleted_folders: Iterable[str] = (),
        *,
        message: str,
        parent: str | None = None,
        repo_type: str = "dataset",
    ) -> str:
        """A commit on existing branch ``revision`` as the Hub's commit route makes it: ``parent`` (if given) must
        be the branch head (412 otherwise), deleted files and folders must exist (404). Logged to commits.jsonl."""
        with self._lock:
            head = self.refs(repo_id, repo_type)["branches"].get(revision)
            if head is None:
                raise StubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if parent is not None and not head.startswith(parent):
                raise StubError(412, None, "A commit has happened since. Please refresh and try again.")
            tree = self.commit_info(repo_id, head, repo_type).files
            files: dict[str, FileContent] = {}
            for path in deleted:
                if path not in tree:
                    raise StubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
                files[path] = None
            for folder in deleted_folders:
                inside = [p for p in tree if p.startswith(folder.rstrip("/") + "/")]
                if not inside:
                    raise StubError(404, "EntryNotFound", f"A folder with this name doesn't exist: {folder}")
                files.update(dict.fromkeys(inside))
            for path in added:
                _check_path(path)
            files.update(added)
            sha = self.commit(repo_id, files, revision=revision, message=message, repo_type=repo_type)
            line = {
                "repo": repo_id,
                "repo_type": repo_type,
                "revision": revision,
                "commit": sha,
                "parent": head,
                "added": sorted(added),
                "deleted": sorted(p for p, c in files.items() if c is None),
                "message": message,
            }
            with (self.root / "commits.jsonl").open("a") as f:
                f.write(json.dumps(line) + "\n")
            return sha

    def pushes(self) -> list[dict[str, Any]]:
        """The lines of commits.jsonl: every commit accepted by the write routes, oldest first."""
        path = self.root / "commits.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def _store_object(self, repo: Path, content: FileContent) -> dict[str, Any]:
        if isinstance(content, str):
            content = content.encode()
        if isinstance(content, bytes):
            chunks: Iterable[bytes] = [content]
            size = len(content)
        else:
            size = Path(content).stat().st_size
            chunks = _read_chunks(Path(content))
        git = hashlib.sha1(f"blob {size}\0".encode())
        sha256 = hashlib.sha256()
        (repo / "objects").mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=repo / "objects", delete=False) as tmp:
            for chunk in chunks:
                git.update(chunk)
                sha256.update(chunk)
                tmp.write(chunk)
        target = repo / "objects" / sha256.hexdigest()[:2] / sha256.hexdigest()
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp.name, target)
        return {"oid": git.hexdigest(), "sha256": sha256.hexdigest(), "size": size}


def lfs_path(path: str, size: int) -> bool:
    """Whether the Hub would store ``path`` through LFS (by name or size)."""
    return size >= LFS_MIN_SIZE or PurePosixPath(path).suffix.lower() in LFS_SUFFIXES


def _check_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise StubError(400, None, f"invalid path in repo: {path!r}")


def _read_chunks(path: Path, size: int = 1 << 20) -> Iterable[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if default is None:
            raise StubError(404, "RevisionNotFound", f"no commit {path.stem}") from None
        return json.loads(json.dumps(default))  # a fresh copy


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
