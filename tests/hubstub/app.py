"""The HTTP side of the Hub stub: the read routes huggingface_hub 2.4 and datasets 5.2 call, as a Starlette app.

Routes (TYPE is ``datasets``, ``models`` or ``spaces``; model file URLs have no prefix)::

    GET       /api/TYPE/ORG/NAME[/revision/REV]          repo info: sha, siblings, cardData (?blobs=true: sizes)
    GET       /api/TYPE/ORG/NAME/tree/REV[/PATH]         listing (?recursive=, ?expand=), Link-header pages
    POST      /api/TYPE/ORG/NAME/paths-info/REV          form: paths=..., expand=...
    GET       /api/TYPE/ORG/NAME/refs                    branches and tags
    GET       /api/TYPE/ORG/NAME/commits/REV             history, Link-header pages
    GET|HEAD  [/TYPE]/ORG/NAME/resolve/REV/PATH          file bytes: X-Repo-Commit, ETag, X-Linked-*, Range
    GET       /_stub/requests                            (stub only) request counts per route, and
                                                         "bytes": response body bytes the Hub routes sent

Write routes (a valid token that may write, see ``store.py``; none -> 401, read-only -> 403)::

    POST      /api/repos/create                          {"name", "organization", "type", "visibility"|"private"}
    POST      /api/validate-yaml                         {} (400 with "errors" if the README's YAML is broken)
    POST      /api/TYPE/ORG/NAME/preupload/REV           every file "regular" (inline), with the remote git oid
    POST      /api/TYPE/ORG/NAME/commit/REV              NDJSON: header, file (base64), deletedFile, deletedFolder
    POST|DEL  /api/TYPE/ORG/NAME/tag/REV | tag/TAG       create ({"tag", "message"}) / delete a tag
    POST|DEL  /api/TYPE/ORG/NAME/branch/BRANCH           create ({"startingPoint"}) / delete a branch

``Faults`` makes the next commit requests fail (429/5xx, optional Retry-After), for retry tests.

Errors carry the Hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) so
huggingface_hub raises the same exception classes as against huggingface.co. Revisions and paths are read from
the raw (still percent-encoded) path, because huggingface_hub sends ``refs%2Fpr%2F1`` as one segment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from tests.hubstub.store import LFS_POINTER_SIZE, REPO_TYPES, Commit, Store, StubError

PAGE_SIZE = 1000  # the Hub's tree page size (50 with expand=true)
EXPAND_PAGE_SIZE = 50


class RequestLog:
    """Counts requests by route name ("repo_info", "tree", "paths_info", "refs", "commits", "resolve",
    "create_repo", "validate_yaml", "preupload", "commit", "create_tag", "delete_tag", "create_branch",
    "delete_branch", "unknown") and method. Thread-safe; tests read it to prove that a cache was (not) used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[str, str, str, int]] = []  # (method, route, path, status)
        self.bytes_sent = 0  # response body bytes, as sent (a Range answer counts the bytes of its range)

    def sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def add(self, method: str, route: str, path: str, status: int) -> None:
        with self._lock:
            self.entries.append((method, route, path, status))

    def count(self, route: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, r, _, _ in self.entries if route in (None, r) and method in (None, m))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f"{m} {r}" for m, r, _, _ in self.entries))

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()


class Faults:
    """Failures to inject: after ``after`` requests of a route ("commit", "create_tag", "refs", ...) pass, the
    next ``n`` answer ``status`` (with ``Retry-After`` if given)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[int, float | None] | None]] = {}  # None: let one request pass

    def fail_next(
        self, route: str, n: int, status: int = 500, retry_after: float | None = None, after: int = 0
    ) -> None:
        with self._lock:
            self._pending.setdefault(route, []).extend([None] * after + [(status, retry_after)] * n)

    def fail_next_commits(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        self.fail_next("commit", n, status, retry_after)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, route: str) -> Response | None:
        with self._lock:
            if not self._pending.get(route) or (fault := self._pending[route].pop(0)) is None:
                return None
            status, retry_after = fault
        headers = {"X-Error-Message": f"injected failure ({status})"}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        return JSONResponse({"error": f"injected failure ({status})"}, status_code=status, headers=headers)


def create_app(
    store: Store,
    log: RequestLog,
    page_size: Callable[[], int] = lambda: PAGE_SIZE,
    faults: Faults | None = None,
) -> Starlette:
    faults = faults or Faults()

    async def dispatch(request: Request) -> Response:
        raw = request.scope.get("raw_path", request.url.path.encode()).split(b"?")[0].decode("latin-1")
        parts = [unquote(p) for p in raw.strip("/").split("/")]
        route, handler, args = _match(parts, request.method)
        try:
            if handler is None:
                response: Response = JSONResponse({"error": f"stub has no route for {raw}"}, status_code=404)
            elif (injected := faults.take(route)) is not None:
                response = injected
            else:
                body = await request.body() if request.method in ("POST", "DELETE") else b""
                response = handler(store, request, body, page_size, *args)
        except StubError as e:
            response = _error(e)
        log.add(request.method, route, raw, response.status_code)
        return response

    async def requests(request: Request) -> Response:
        return JSONResponse({**log.counts(), "bytes": log.bytes_sent})

    app = Starlette(
        routes=[
            Route("/_stub/requests", requests, methods=["GET"]),
            Route("/{path:path}", dispatch, methods=["GET", "HEAD", "POST", "DELETE"]),
        ]
    )

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        """The app, counting the body bytes it sends (what a client downloads, ranges as served)."""

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                log.sent(len(message.get("body", b"")))
            await send(message)

        hub = scope["type"] == "http" and not scope["path"].startswith("/_stub/")  # the stub's own routes: not
        await app(scope, receive, counting_send if hub else send)

    return counted  # type: ignore[return-value]


def _match(parts: list[str], method: str = "GET") -> tuple[str, Any, tuple]:
    """(route name, handler, (repo_type, repo_id, *rest)) for a split, decoded path."""
    if method == "POST" and parts == ["api", "repos", "create"]:
        return "create_repo", _create_repo, ()
    if method == "POST" and parts == ["api", "validate-yaml"]:
        return "validate_yaml", _validate_yaml, ()
    if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES.values():
        repo_type = _type_of(parts[1])
        repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
        if len(rest) > 1 and rest[0] in _WRITE_ROUTES and method in _WRITE_ROUTES[rest[0]]:
            name, handler = _WRITE_ROUTES[rest[0]][method]
            return name, handler, (repo_type, repo_id, "/".join(rest[1:]))
        if method == "DELETE":
            return "unknown", None, ()
        if not rest:
            return "repo_info", _repo_info, (repo_type, repo_id, None)
        if rest[0] == "revision" and len(rest) > 1:
            return "repo_info", _repo_info, (repo_type, repo_id, "/".join(rest[1:]))
        if rest[0] == "tree" and len(rest) > 1:
            return "tree", _tree, (repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if rest[0] == "paths-info" and len(rest) > 1:
            return "paths_info", _paths_info, (repo_type, repo_id, "/".join(rest[1:]))
        if rest == ["refs"]:
            return "refs", _refs, (repo_type, repo_id)
        if rest[0] == "commits" and len(rest) > 1:
            return "commits", _commits, (repo_type, repo_id, "/".join(rest[1:]))
        return "unknown", None, ()
    if method == "DELETE":
        return "unknown", None, ()
    prefixed = len(parts) >= 1 and parts[0] in ("datasets", "spaces")
    repo_type = _type_of(parts[0]) if prefixed else "model"
    parts = parts[1:] if prefixed else parts
    if len(parts) >= 5 and parts[2] == "resolve":
        return "resolve", _resolve, (repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
    return "unknown", None, ()


def _type_of(folder: str) -> str:
    return next(t for t, f in REPO_TYPES.items() if f == folder)


# ---- access ------------------------------------------------------------------------------------------------


def _authorize(store: Store, request: Request, repo_type: str, repo_id: str, content: bool) -> None:
    """Answer as the Hub does: an unknown token is refused everywhere; a private repo is 'not found' to
    anyone without access (401 anonymous, 404 logged in); a gated repo shows its metadata and listing but not
    its files (401 anonymous, 403 logged in without a grant)."""
    token = _token(request)
    access = store.access(repo_id, repo_type)
    if token and token not in access.tokens and token not in store.tokens():
        raise StubError(401, None, "Invalid credentials in Authorization header")
    not_found = StubError(401 if token is None else 404, "RepoNotFound", "Repository not found")
    if not store.exists(repo_id, repo_type):
        raise not_found
    if access.private and token not in access.tokens:
        raise not_found
    if access.gated and content and token not in access.tokens:
        raise StubError(
            401 if token is None else 403,
            "GatedRepo",
            f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated "
            "to access it. Please log in.",
        )


def _error(e: StubError) -> Response:
    headers = {"X-Error-Message": e.message.encode("ascii", "backslashreplace").decode()}  # headers are latin-1
    if e.code:
        headers["X-Error-Code"] = e.code
    if e.commit:
        headers["X-Repo-Commit"] = e.commit
    return JSONResponse({"error": e.message}, status_code=e.status, headers=headers)


# ---- routes ------------------------------------------------------------------------------------------------


def _repo_info(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    _authorize(store, request, repo_type, repo_id, content=False)
    sha = store.resolve(repo_id, revision, repo_type)
    commit = store.commit_info(repo_id, sha, repo_type)
    access = store.access(repo_id, repo_type)
    blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
    siblings = [
        {"rfilename": path, **({"size": f["size"], "blobId": f["oid"]} if blobs else {})}
        | ({"lfs": _lfs(f)} if blobs and f["lfs"] else {})
        for path, f in commit.files.items()
    ]
    first = store.history(repo_id, sha, repo_type)[-1]
    data = {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0],
        "sha": sha,
        "lastModified": commit.date,
        "createdAt": first.date,
        "private": access.private,
        "gated": "auto" if access.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(f["size"] for f in commit.files.values()),
    }
    card = _card_data(store, repo_type, repo_id, commit)
    if card is not None:
        data["cardData"] = card
    return JSONResponse(data)


def _tree(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision, path) -> Response:
    _authorize(store, request, repo_type, repo_id, content=False)
    sha = store.resolve(repo_id, revision, repo_type)
    commit = store.commit_info(repo_id, sha, repo_type)
    path = path.strip("/")
    folders = commit.folders()
    if path and path not in folders:
        raise StubError(404, "EntryNotFound", f"{path} does not exist on {revision}", commit=sha)
    recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
    expand = request.query_params.get("expand", "").lower() in ("1", "true")
    prefix = f"{path}/" if path else ""
    names = [p for p in [*sorted(folders), *commit.files] if p.startswith(prefix)]
    if not recursive:
        names = [p for p in names if "/" not in p[len(prefix) :]]
    entries = sorted(names, key=lambda p: (p not in folders, p))  # folders first, as the Hub lists them
    limit = EXPAND_PAGE_SIZE if expand else page_size()
    start = int(request.query_params.get("cursor", "0") or 0)
    page = [_entry(store, repo_type, repo_id, commit, p, expand) for p in entries[start : start + limit]]
    headers = {}
    if start + limit < len(entries):
        headers["Link"] = f'<{request.url.include_query_params(cursor=start + limit)}>; rel="next"'
    return JSONResponse(page, headers=headers)


def _paths_info(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    _authorize(store, request, repo_type, repo_id, content=False)
    sha = store.resolve(repo_id, revision, repo_type)
    commit = store.commit_info(repo_id, sha, repo_type)
    form = parse_qs(body.decode(), keep_blank_values=True)
    expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
    folders = commit.folders()
    paths = [p.strip("/") for p in form.get("paths", [])]
    found = [p for p in paths if p in commit.files or p in folders]
    return JSONResponse([_entry(store, repo_type, repo_id, commit, p, expand) for p in found])


def _refs(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id) -> Response:
    _authorize(store, request, repo_type, repo_id, content=False)
    refs = store.refs(repo_id, repo_type)

    def listed(kind: str, prefix: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": s} for n, s in sorted(refs[kind].items())]

    data: dict[str, Any] = {
        "branches": listed("branches", "refs/heads/"),
        "converts": [],
        "tags": listed("tags", "refs/tags/"),
    }
    if request.query_params.get("include_prs"):
        data["pullRequests"] = []
    return JSONResponse(data)


def _commits(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    _authorize(store, request, repo_type, repo_id, content=False)
    history = store.history(repo_id, store.resolve(repo_id, revision, repo_type), repo_type)
    start, limit = int(request.query_params.get("cursor", "0") or 0), page_size()
    page = [
        {"id": c.id, "title": c.title, "message": c.message, "authors": [{"user": "stub"}], "date": c.date}
        for c in history[start : start + limit]
    ]
    headers = {}
    if start + limit < len(history):
        headers["Link"] = f'<{request.url.include_query_params(cursor=start + limit)}>; rel="next"'
    return JSONResponse(page, headers=headers)


def _resolve(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision, path) -> Response:
    _authorize(store, request, repo_type, repo_id, content=True)
    sha = store.resolve(repo_id, revision, repo_type)
    entry = store.commit_info(repo_id, sha, repo_type).files.get(path)
    if entry is None:
        raise StubError(404, "EntryNotFound", f"{path} does not exist on {revision}", commit=sha)
    headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"'}
    if entry["lfs"]:  # the Hub answers LFS files with a redirect carrying these; the stub serves them directly
        headers |= {"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])}
    return FileResponse(
        store.blob(repo_id, entry["sha256"], repo_type),
        headers=headers,
        media_type="application/octet-stream",
    )


# ---- write routes ------------------------------------------------------------------------------------------


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _writer(store: Store, request: Request) -> str:
    """The request's token if it may write at all: none or unknown -> 401, read-only -> 403."""
    token = _token(request)
    if not token:
        raise StubError(401, None, "Invalid username or password.")
    if token not in store.tokens():
        raise StubError(401, None, "Invalid credentials in Authorization header")
    if token in store.readonly_tokens():
        raise StubError(403, None, "You don't have the rights to write to this repository (read-only token)")
    return token


def _authorize_write(store: Store, request: Request, repo_type: str, repo_id: str) -> str:
    token = _writer(store, request)
    _authorize(store, request, repo_type, repo_id, content=False)  # exists and is visible to the token
    return token


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise StubError(400, None, "body is not JSON") from None
    if not isinstance(data, dict):
        raise StubError(400, None, "body is not a JSON object")
    return data


def _repo_url(request: Request, repo_type: str, repo_id: str) -> str:
    base = str(request.base_url).rstrip("/")  # must start with the client's endpoint (else HfUriError)
    return f"{base}/{repo_id}" if repo_type == "model" else f"{base}/{REPO_TYPES[repo_type]}/{repo_id}"


def _create_repo(store: Store, request: Request, body: bytes, page_size) -> Response:
    token = _writer(store, request)
    data = _json_body(body)
    repo_type = data.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise StubError(400, None, f"invalid repo type {repo_type!r}")
    repo_id = f"{data.get('organization') or 'stub-user'}/{data.get('name')}"
    private = data.get("visibility", "private" if data.get("private") else "public") == "private"
    url = _repo_url(request, repo_type, repo_id)
    try:
        store.create_repo(repo_id, private=private, token=token, repo_type=repo_type)
    except StubError as e:
        if e.status == 409:  # huggingface_hub reads "url" from the 409 too (exist_ok=True)
            return JSONResponse(
                {"error": e.message, "url": url}, status_code=409, headers={"X-Error-Message": e.message}
            )
        raise
    return JSONResponse({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})


def _validate_yaml(store: Store, request: Request, body: bytes, page_size) -> Response:
    text = str(_json_body(body).get("content") or "")
    if text.startswith("---"):
        try:
            yaml.safe_load(text[3:].split("\n---", 1)[0])
        except yaml.YAMLError as e:
            return JSONResponse({"errors": [{"message": str(e)}]}, status_code=400)
    return JSONResponse({})


def _preupload(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    """Every file is "regular" (inline base64 in the commit), so no LFS or Xet server is needed; ``oid`` is the
    git blob id of the file already at that path, which huggingface_hub compares to skip unchanged files."""
    _authorize_write(store, request, repo_type, repo_id)
    create_pr = request.query_params.get("create_pr") in ("1", "true")
    try:
        files = store.commit_info(repo_id, store.resolve(repo_id, revision, repo_type), repo_type).files
    except StubError:
        if not create_pr:
            raise
        files = {}
    out = []
    for item in _json_body(body).get("files", []):
        path = item.get("path")
        entry = {"path": path, "uploadMode": "regular", "shouldIgnore": False}
        out.append(entry | ({"oid": files[path]["oid"]} if path in files else {}))
    return JSONResponse({"files": out, "commitOid": None})


def _commit(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    _authorize_write(store, request, repo_type, repo_id)
    if request.query_params.get("create_pr") in ("1", "true"):
        raise StubError(400, None, "the stub does not open pull requests (commit to a branch instead)")
    header: dict[str, Any] = {}
    added: dict[str, bytes] = {}
    deleted: list[str] = []
    folders: list[str] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item.get("value") or {}
        except (ValueError, KeyError, TypeError):
            raise StubError(400, None, "commit body is not NDJSON of {key, value}") from None
        if key == "header":
            header = value
        elif key == "file":
            content = value.get("content", "")
            added[value["path"]] = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
        elif key == "deletedFile":
            deleted.append(value["path"])
        elif key == "deletedFolder":
            folders.append(value["path"])
        else:  # lfsFile, copyFile: never asked for (preupload answers "regular")
            raise StubError(400, None, f"the stub does not accept {key!r} commit operations")
    summary = str(header.get("summary") or "").strip()
    if not summary:
        raise StubError(400, None, "commit summary is required")
    description = str(header.get("description") or "").strip()
    message = f"{summary}\n\n{description}" if description else summary
    sha = store.push(
        repo_id,
        revision,
        added,
        [p for p in deleted if p not in added],
        folders,
        message=message,
        parent=header.get("parentCommit"),
        repo_type=repo_type,
    )
    commit_url = f"{_repo_url(request, repo_type, repo_id)}/commit/{sha}"
    return JSONResponse({"success": True, "commitOid": sha, "commitUrl": commit_url, "hookOutput": ""})


def _create_tag(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, revision) -> Response:
    _authorize_write(store, request, repo_type, repo_id)
    tag = str(_json_body(body).get("tag") or "")
    if not tag or "/" in tag:
        raise StubError(400, None, f"invalid tag name {tag!r}")
    with store._lock:
        sha = store.resolve(repo_id, revision, repo_type)
        if tag in store.refs(repo_id, repo_type)["tags"]:
            raise StubError(409, None, f"Tag {tag} already exists")
        store.set_ref(repo_id, tag, sha, kind="tags", repo_type=repo_type)
    return JSONResponse({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": sha})


def _delete_tag(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, tag) -> Response:
    _authorize_write(store, request, repo_type, repo_id)
    with store._lock:
        if tag not in store.refs(repo_id, repo_type)["tags"]:
            raise StubError(404, "RevisionNotFound", f"Invalid rev id: {tag}")
        store.set_ref(repo_id, tag, None, kind="tags", repo_type=repo_type)
    return JSONResponse({})


def _create_branch(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, branch) -> Response:
    _authorize_write(store, request, repo_type, repo_id)
    start = _json_body(body).get("startingPoint")
    with store._lock:
        if branch in store.refs(repo_id, repo_type)["branches"]:
            raise StubError(409, None, f"Branch {branch} already exists")
        default = store.refs(repo_id, repo_type)["branches"].get("main")
        sha = store.resolve(repo_id, start, repo_type) if start or default is None else default
        store.set_ref(repo_id, branch, sha, kind="branches", repo_type=repo_type)
    return JSONResponse({})


def _delete_branch(store: Store, request: Request, body: bytes, page_size, repo_type, repo_id, branch) -> Response:
    _authorize_write(store, request, repo_type, repo_id)
    with store._lock:
        if branch not in store.refs(repo_id, repo_type)["branches"] or branch == "main":
            raise StubError(404 if branch != "main" else 403, "RevisionNotFound", f"cannot delete branch {branch}")
        store.set_ref(repo_id, branch, None, kind="branches", repo_type=repo_type)
    return JSONResponse({})


_WRITE_ROUTES: dict[str, dict[str, tuple[str, Any]]] = {
    "preupload": {"POST": ("preupload", _preupload)},
    "commit": {"POST": ("commit", _commit)},
    "tag": {"POST": ("create_tag", _create_tag), "DELETE": ("delete_tag", _delete_tag)},
    "branch": {"POST": ("create_branch", _create_branch), "DELETE": ("delete_branch", _delete_branch)},
}


# ---- helpers -----------------------------------------------------------------------------------------------


def _lfs(f: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": f["sha256"], "size": f["size"], "pointerSize": LFS_POINTER_SIZE}


def _entry(store: Store, repo_type: str, repo_id: str, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
    f = commit.files.get(path)
    if f is None:  # a folder: its oid stands for its contents, like a git tree id
        inside = sorted((p, g["oid"]) for p, g in commit.files.items() if p.startswith(f"{path}/"))
        entry: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest()}
        entry["path"] = path
    else:
        entry = {"type": "file", "oid": f["oid"], "size": f["size"], "path": path}
        if f["lfs"]:
            entry["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": LFS_POINTER_SIZE}
    if expand:
        last = _last_commit(store, repo_type, repo_id, commit, path)
        entry["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        if f is not None:
            entry["securityFileStatus"] = {"status": "safe", "avScan": None, "pickleImportScan": None}
    return entry


def _last_commit(store: Store, repo_type: str, repo_id: str, commit: Commit, path: str) -> Commit:
    """The oldest commit in an unbroken run, back from ``commit``, where ``path`` (file or folder) is unchanged."""

    def state(c: Commit) -> list:
        return sorted((p, f["oid"]) for p, f in c.files.items() if p == path or p.startswith(f"{path}/"))

    mine, last = state(commit), commit
    for older in store.history(repo_id, commit.id, repo_type)[1:]:
        if state(older) != mine:
            break
        last = older
    return last


def _card_data(store: Store, repo_type: str, repo_id: str, commit: Commit) -> dict[str, Any] | None:
    """The README's YAML header, as the Hub returns it in ``cardData``."""
    entry = commit.files.get("README.md")
    if entry is None:
        return None
    text = store.blob(repo_id, entry["sha256"], repo_type).read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    header = text[3:].split("\n---", 1)[0]
    try:
        data = yaml.safe_load(header)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None
