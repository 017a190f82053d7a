"""The Hub through huggingface_hub: which repo a source names, its files, and its errors as ConfigErrors.

Every error is a ``ConfigError("config", [("items.source" | "items.revision", reason)])`` that says what to do
(gated, private, missing, offline, unreachable); no message shows a token (tokens are registered with
``polypref.safety.secrets``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from polypref.errors import ConfigError, first_line, http_status
from polypref.items.datafiles import CONFIG
from polypref.safety import secrets


def hub_repo(source: str, revision: str | None) -> tuple[str, str | None]:
    """(repo id, revision asked for, None for main) of an hf:// source, refused unless it names a dataset repo."""
    from huggingface_hub.errors import HfUriError
    from huggingface_hub.utils import parse_hf_uri

    try:
        uri = parse_hf_uri(source)
    except HfUriError as e:
        raise ConfigError(CONFIG, [("items.source", first_line(e))]) from None
    if uri.type != "dataset":
        raise ConfigError(
            CONFIG, [("items.source", f"{source}: only dataset repos can be read: hf://datasets/ORG/NAME")]
        )
    if uri.path_in_repo:
        raise ConfigError(
            CONFIG,
            [
                (
                    "items.source",
                    f"{source}: name the dataset (hf://datasets/{uri.id}); items.config and items.split "
                    "choose its files",
                )
            ],
        )
    if uri.revision is not None and revision is not None and uri.revision != revision:
        raise ConfigError(
            CONFIG, [("items.revision", f"{revision!r} contradicts the revision in items.source ({uri.revision!r})")]
        )
    return uri.id, revision or uri.revision


def repo_files(repo_id: str, sha: str, folder: Path) -> dict[str, int | None]:
    """Every file of the repo at ``sha`` with its size: from the listing huggingface_hub caches, else from the
    Hub (online) or from what the cached snapshot holds (offline)."""
    from huggingface_hub import HfApi, constants, get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        return {f.path: f.size for f in get_cached_repo_tree(repo_id, repo_type="dataset", revision=sha)}
    except CachedRepoTreeNotFoundError:
        pass
    if constants.is_offline_mode():
        return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    tree = HfApi().list_repo_tree(repo_id, repo_type="dataset", revision=sha, recursive=True)
    return {f.path: f.size for f in tree if isinstance(f, RepoFile)}


def register_tokens() -> None:
    """Tokens huggingface_hub may send are secrets: no message polypref prints may show them."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secrets.register(os.environ.get(name))
    with suppress(OSError, UnicodeDecodeError):
        secrets.register(Path(constants.HF_TOKEN_PATH).read_text().strip())


@contextmanager
def quiet_no_match() -> Iterator[None]:
    """snapshot_download warns 'No files matched' when a repo has no README.md; that is not a problem here."""
    logger = logging.getLogger("huggingface_hub._snapshot_download")

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No files matched")

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextmanager
def hub_errors(repo_id: str, revision: str | None, file: str | None = None) -> Iterator[None]:
    """huggingface_hub's exceptions as ConfigErrors that say what to do; ``file``: the one being read."""
    from huggingface_hub import constants

    asked = _Asked(
        repo_id,
        revision,
        where=(f"{repo_id}@{revision}" if revision else repo_id) + (f" {file}" if file else ""),
        endpoint=secrets.redact_url(constants.ENDPOINT),
        token=bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")),
    )
    try:
        yield
    except Exception as e:
        problem = _repo_problem(e, asked)
        if problem is None:
            reason = _access_problem(e, asked)
            if reason is None:
                raise
            problem = ("items.source", reason)
        raise _hub_error(*problem) from None


@dataclass(frozen=True)
class _Asked:
    """What a Hub request asked for, and how its errors name it."""

    repo_id: str
    revision: str | None
    where: str  # "ORG/NAME@REVISION FILE"
    endpoint: str  # the Hub's address, without credentials
    token: bool  # whether HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) is set


def _repo_problem(e: Exception, asked: _Asked) -> tuple[str, str] | None:
    """(field, reason) for a repo or revision the Hub will not give: gated, private or missing, disabled."""
    from huggingface_hub.errors import DisabledRepoError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, endpoint = asked.repo_id, asked.endpoint
    if isinstance(e, GatedRepoError):
        page = f"{endpoint}/datasets/{repo_id}"
        if asked.token and http_status(e) == 403:
            reason = (
                f"dataset {repo_id} is gated and the account of HF_TOKEN has not been granted access: ask at {page}"
            )
        else:
            reason = f"dataset {repo_id} is gated: set HF_TOKEN to a token of an account granted access (ask at {page})"
        return "items.source", reason
    if isinstance(e, RepositoryNotFoundError):
        hint = (
            "or HF_TOKEN cannot read it"
            if asked.token
            else "if it is private, set HF_TOKEN to a token that can read it"
        )
        return "items.source", f"dataset {repo_id} not found on {endpoint} ({hint})"
    if isinstance(e, RevisionNotFoundError):
        return "items.revision", f"revision {asked.revision!r} not found in dataset {repo_id}{_refs(repo_id)}"
    if isinstance(e, DisabledRepoError):
        return "items.source", f"dataset {repo_id} is disabled on {endpoint}"
    return None


def _access_problem(e: Exception, asked: _Asked) -> str | None:
    """Why a request failed (an items.source problem): a Hub that cannot be reached or read, or a cache that
    cannot be written."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        FileMetadataError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    endpoint, where = asked.endpoint, asked.where
    offline = (
        "HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests and reads only its cache "
        f"({constants.HF_HUB_CACHE})"
    )
    if isinstance(e, IncompleteSnapshotError):
        return f"{offline}, and it holds only part of {where}: {first_line(e)}; run once without HF_HUB_OFFLINE"
    if isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled | httpx2.TransportError):
        if constants.is_offline_mode():
            return f"{offline}, which does not hold {where}: run once without HF_HUB_OFFLINE to download it"
        return (
            f"cannot reach {endpoint} ({_root_cause(e)}) and {where} is not in the cache "
            f"({constants.HF_HUB_CACHE}): check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to read "
            "only the cache"
        )
    if isinstance(e, HfHubHTTPError):
        if http_status(e) == 401:
            return f"{endpoint} refused the token in HF_TOKEN (invalid credentials): set a valid one, or unset it"
        message = e.server_message or first_line(e)
        return f"{endpoint} answered HTTP {http_status(e)} for dataset {asked.repo_id}: {message}"
    if isinstance(e, FileMetadataError):
        return f"{endpoint} does not answer like the Hub (check HF_ENDPOINT): {e}"
    if isinstance(e, OSError):  # the cache: disk full, no permission
        return f"cannot write the Hugging Face cache ({constants.HF_HUB_CACHE}): {e}"
    return None


def _hub_error(field_name: str, reason: str) -> ConfigError:
    return ConfigError(CONFIG, [(field_name, secrets.scrub(reason))])


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {first_line(e)}"


def _refs(repo_id: str) -> str:
    """' (branches: [...]; tags: [...])', or '' when the Hub cannot be asked."""
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id, repo_type="dataset")
    except Exception:  # only a hint in an error message
        return ""
    return f" (branches: {sorted(b.name for b in refs.branches)}; tags: {sorted(t.name for t in refs.tags)})"
