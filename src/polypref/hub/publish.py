"""Push a finished build folder to a Hugging Face Hub dataset repo: few large commits, only what changed, tagged.

The remote mirrors the folder's published part (``README.md``, ``map.png``, ``data/``): files whose bytes the remote
already holds (same git blob id, or same LFS sha256) are not uploaded again, remote data files the folder no
longer has are deleted, and a push of an unchanged folder makes no commit. Data files go first, in commits of
at most ``FILES_PER_COMMIT`` (the Hub allows about 128 commits an hour per repo), and the card last, so the card
never describes files that have not landed. A push that was interrupted resumes: the next one compares again
and uploads what is missing. Each push that changed something is tagged ``v1``, ``v2``, ... so consumers can pin
a revision. 429, 412 and 5xx answers are retried with backoff (honouring ``Retry-After``); the last one becomes a
clear error. ``HF_TOKEN`` comes from the environment and is registered as a secret, so it reaches no message.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from polypref import files
from polypref.build.lock import folder_lock
from polypref.build.state import MAP_PNG, BuildState
from polypref.errors import PolyprefError, http_status
from polypref.items.hub_errors import Request, hub_problem, register_tokens
from polypref.llms.ratelimit import retry_note

log = logging.getLogger("polypref.hub.publish")

FILES_PER_COMMIT = 99  # fewer than 100 files per commit, as the Hub recommends
RETRY_STATUSES = frozenset({412, 429, 500, 502, 503, 504})
TAG = re.compile(r"v(\d+)")
T = TypeVar("T")


class PublishError(PolyprefError):
    """A push that cannot go on: a bad folder or card, a refused token, or a Hub that kept failing."""


@dataclass
class PushResult:
    repo: str
    revision: str
    commits: list[str] = field(default_factory=list)  # commit ids made by this push, in order
    uploaded: list[str] = field(default_factory=list)  # paths uploaded (new or changed)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0  # local files the remote already held
    tag: str | None = None  # the tag this push created (None: nothing changed, nothing tagged)
    pinned: str | None = None  # the tag that names the build on the Hub now (this push's or an earlier one's)


def require_token(where: str) -> None:
    """Fail before a build that will publish if no Hub token is set, not after its judgments are paid for."""
    from huggingface_hub import get_token

    if not get_token():
        raise PublishError(f"{where}: publishing needs a Hub token with write access; set HF_TOKEN")


def content_ids(path: Path, chunk: int = 1 << 20) -> tuple[str, str]:
    """A file's git blob id (what the Hub reports for a file stored in git) and its sha256 (for one in LFS), in
    one streaming pass: a data file of gigabytes is never held whole in memory."""
    size = path.stat().st_size
    blob, sha = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            blob.update(block)
            sha.update(block)
    return blob.hexdigest(), sha.hexdigest()


def published_files(folder: Path) -> dict[str, Path]:
    """What a push uploads: the card and every data file, by their path in the repo."""
    paths = {"README.md": folder / "README.md"}
    if (folder / MAP_PNG).is_file():  # the card shows it
        paths[MAP_PNG] = folder / MAP_PNG
    paths.update({p.relative_to(folder).as_posix(): p for p in sorted((folder / "data").rglob("*.parquet"))})
    return paths


def check_folder(folder: Path) -> dict[str, Path]:
    """One whole, finished build exactly as it was written, with a valid card, before anything is sent: a Hub
    revision that does not load (a shard missing or damaged, a refresh cut short) would be tagged and pinned."""
    state = BuildState(folder)
    if state.held() is None:  # never built here: nothing to finish or repair
        raise PublishError(
            f"{folder} holds no polypref build, so nothing was pushed: build it first (polypref build CONFIG --out "
            f"{folder}), then push"
        )
    if problems := state.whole_build_problems():
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PublishError(
            f"{folder} is not a whole build, so nothing was pushed: {problems[0]}{more}. Run its build again "
            f"(polypref build CONFIG --out {folder}, with the config that made it) to finish or repair it: missing "
            "or damaged shards are made again from the stored judgments, without new requests; then push"
        )
    card = files.read_text(folder / "README.md", str(folder), "README.md")
    meta = card_metadata(card, folder / "README.md")
    paths = published_files(folder)
    for config in meta.get("configs") or []:
        for entry in config.get("data_files") or []:
            pattern = entry["path"] if isinstance(entry, dict) else entry
            if not any(Path(p).match(pattern) for p in paths if p != "README.md"):
                raise PublishError(
                    f"{folder / 'README.md'}: config {config.get('config_name')!r} names {pattern!r}, "
                    "which matches no data file in the folder"
                )
    return paths


def card_metadata(card: str, where: Path) -> dict[str, Any]:
    """The card's YAML front matter, which must parse to a mapping (the Hub refuses the card otherwise)."""
    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    if not match:
        raise PublishError(f"{where}: the dataset card has no YAML front matter (--- ... ---)")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as e:
        raise PublishError(f"{where}: the card's YAML does not parse: {e}") from None
    if not isinstance(meta, dict):
        raise PublishError(f"{where}: the card's YAML must be a mapping")
    return meta


def push(
    folder: str | Path,
    repo: str,
    private: bool = False,
    revision: str = "main",
    api: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = 6,
    wait: bool = False,
) -> PushResult:
    """Mirror ``folder``'s card and data into ``repo`` (a dataset repo, created if missing), holding the folder's
    lock (``wait``: until the build that holds it ends)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
        if repo.count("/") != 1:
            raise HFValidationError("give it as ORG/NAME")
    except HFValidationError as e:
        raise PublishError(f"--repo {repo!r} is not a Hub repo id: {e}") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder")
    with folder_lock(folder, wait=wait, command="push"):  # no build may change the folder while it is sent
        return _push(folder, repo, private, revision, api, _Retry(sleep, attempts))


def _push(folder: Path, repo: str, private: bool, revision: str, api: Any, retry: _Retry) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi

    local = check_folder(folder)
    register_tokens()
    api = api or HfApi()
    with _hub_errors(repo, revision):
        retry(lambda: api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True))
        retry(lambda: DatasetCard(local["README.md"].read_text(encoding="utf-8")).validate(repo_type="dataset"))
        if revision != "main":
            retry(lambda: api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True))
        remote = retry(lambda: _remote_files(api, repo, revision))
        result = PushResult(repo, revision)
        changed = []
        for path, source in local.items():
            if path in remote and remote[path] in content_ids(source):
                result.unchanged += 1
            else:
                changed.append(path)
        stale = sorted(p for p in remote if p.startswith("data/") and p not in local)
        data_changes = [p for p in changed if p != "README.md"]
        batches = [data_changes[i : i + FILES_PER_COMMIT] for i in range(0, len(data_changes), FILES_PER_COMMIT)]
        last: list[Any] = [CommitOperationDelete(path_in_repo=p) for p in stale]
        if "README.md" in changed:
            last.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(local["README.md"])))
        for number, batch in enumerate(batches, start=1):
            operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local[p])) for p in batch]
            message = f"polypref: data files, part {number} of {len(batches)}"
            result.commits.append(retry(lambda ops=operations, m=message: _commit(api, repo, revision, ops, m)))
            result.uploaded.extend(batch)
        if last:
            message = "polypref: dataset card" + (f", {len(stale)} stale data files removed" if stale else "")
            result.commits.append(retry(lambda: _commit(api, repo, revision, last, message)))
            result.uploaded.extend(p for p in ("README.md",) if p in changed)
            result.deleted.extend(stale)
        # also when nothing changed: a push cut short after its last commit left that commit untagged
        tag, created = retry(lambda: _tag_head(api, repo, revision, result.commits[-1] if result.commits else None))
        result.tag = tag if created else None
        result.pinned = tag
    return result


def _commit(api: Any, repo: str, revision: str, operations: list[Any], message: str) -> str:
    info = api.create_commit(repo, operations, commit_message=message, repo_type="dataset", revision=revision)
    return str(info.oid)


def _remote_files(api: Any, repo: str, revision: str) -> dict[str, str]:
    """Path -> content id (LFS sha256 when the file is in LFS, else its git blob id)."""
    from huggingface_hub.hf_api import RepoFile

    entries = api.list_repo_tree(repo, recursive=True, revision=revision, repo_type="dataset")
    return {e.path: (e.lfs.sha256 if e.lfs else e.blob_id) for e in entries if isinstance(e, RepoFile)}


def _tag_head(api: Any, repo: str, revision: str, commit: str | None) -> tuple[str, bool]:
    """The ``vN`` tag of ``commit`` (default: the revision's head), created as the next number if it has none;
    and whether this call created it. Idempotent, so a push that died while tagging, or a tag request whose
    answer was lost, is completed by the next push without a second tag."""
    from huggingface_hub.errors import HfHubHTTPError

    refs = api.list_repo_refs(repo, repo_type="dataset")
    head = commit or next((b.target_commit for b in refs.branches if b.name == revision), None)
    tags = {t.name: t.target_commit for t in refs.tags if TAG.fullmatch(t.name)}
    if mine := sorted((n for n, c in tags.items() if c == head), key=lambda n: int(n[1:])):
        return mine[-1], False
    tag = f"v{max((int(n[1:]) for n in tags), default=0) + 1}"
    try:
        api.create_tag(repo, tag=tag, revision=head, repo_type="dataset")
    except HfHubHTTPError as e:
        if http_status(e) != 409:  # 409: it exists; an earlier attempt landed, or another pusher took the name
            raise
        return _tag_head(api, repo, revision, head)
    return tag, True


@dataclass
class _Retry:
    """Calls that the Hub may refuse for a while (rate limits, a moved branch head, a server error)."""

    sleep: Callable[[float], None]
    attempts: int
    base: float = 1.0
    cap: float = 60.0

    def __call__(self, call: Callable[[], T]) -> T:
        from huggingface_hub.errors import HfHubHTTPError

        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except HfHubHTTPError as e:
                status = http_status(e)
                if status not in RETRY_STATUSES or attempt == self.attempts:
                    raise
                after = e.response.headers.get("retry-after") if e.response is not None else None
                asked = float(after) if after and after.replace(".", "", 1).isdigit() else None
                wait = min(self.base * 2 ** (attempt - 1) if asked is None else asked, self.cap)
                note = retry_note(wait, asked, self.cap)
                log.warning("the Hub answered %s; %s (attempt %d of %d)", status, note, attempt, self.attempts)
                self.sleep(wait)
        raise AssertionError("unreachable")


@contextmanager
def _hub_errors(repo: str, revision: str) -> Iterator[None]:
    """huggingface_hub's errors as one clear PublishError (what failed, what to do; ``items.hub_errors``' table,
    which reading items from the Hub shares), never a traceback."""
    try:
        yield
    except Exception as error:
        problem = hub_problem(error, Request(repo, revision, writing=True))
        if problem is None:
            raise
        raise PublishError(f"pushing to {repo} failed ({problem.status or 'no answer'}): {problem.reason}") from None


def iter_summary(result: PushResult) -> Iterator[str]:
    """Lines the CLI prints."""
    if not result.commits:
        yield f"{result.repo} already holds this build ({result.unchanged} files unchanged): no commit" + (
            f"; tagged {result.tag} (the last push stopped before tagging it)" if result.tag else f", {result.pinned}"
        )
        return
    yield (
        f"pushed to {result.repo}@{result.revision}: {len(result.uploaded)} files uploaded, {len(result.deleted)} "
        f"deleted, {result.unchanged} unchanged, in {len(result.commits)} commits; tagged {result.tag}"
    )
    yield f'load it: datasets.load_dataset("{result.repo}", revision="{result.tag}")'
