"""huggingface_hub's exceptions in words: the one table both reading items from the Hub (``items.hub``, as
ConfigErrors) and pushing a build to it (``hub.publish``, as PublishErrors) use.

``hub_problem(error, request)`` says what went wrong and what to do, for a read or for a push (``Request.writing``):
a gated, private, missing or disabled repo, an unknown revision or file, a refused token, the Hub's other HTTP
answers (a rate limit, a server error), offline mode, a Hub that cannot be reached, a cache that cannot be
written. It lives in the inputs layer, below ``hub/``, because reading items needs it and may not import upward.
Every reason is scrubbed of secrets: tokens are registered here (``register_tokens``) before any request.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polypref.errors import first_line, http_status
from polypref.safety import secrets

RESUME = "push again to resume: files already on the Hub are not uploaded twice"


@dataclass(frozen=True)
class Request:
    """What a Hub request asked for, and how its errors name it."""

    repo_id: str
    revision: str | None = None
    file: str | None = None  # the one being read
    writing: bool = False  # a push (a token with write access), not a read

    @property
    def where(self) -> str:
        """'ORG/NAME@REVISION FILE'."""
        return (f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id) + (
            f" {self.file}" if self.file else ""
        )


@dataclass(frozen=True)
class HubProblem:
    """Why a request failed: ``about`` the repo (or the Hub, the network, the cache) or the revision asked for."""

    about: Literal["repo", "revision"]
    reason: str  # scrubbed: no token
    status: int | None  # the Hub's HTTP answer, None when there was none


def register_tokens() -> None:
    """Tokens huggingface_hub may send are secrets: no message polypref prints may show them."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secrets.register(os.environ.get(name))
    with suppress(OSError, UnicodeDecodeError):
        secrets.register(Path(constants.HF_TOKEN_PATH).read_text().strip())


def is_hub_error(e: BaseException) -> bool:
    """Whether ``e`` is huggingface_hub's or the network's (what ``hub_problem`` words), not a file's own."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return isinstance(e, HfHubHTTPError | httpx2.TransportError | OfflineModeIsEnabled)


def hub_problem(e: Exception, request: Request) -> HubProblem | None:
    """What ``e`` means for ``request``, None when it is not a Hub error this table knows (the caller re-raises)."""
    from huggingface_hub import constants

    endpoint = secrets.redact_url(constants.ENDPOINT)
    found = _repo_problem(e, request, endpoint)
    if found is None:
        reason = _access_problem(e, request, endpoint)
        found = None if reason is None else ("repo", reason)
    if found is None:
        return None
    return HubProblem(found[0], secrets.scrub(found[1]), http_status(e))


def _has_token() -> bool:
    return bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def _repo_problem(e: Exception, request: Request, endpoint: str) -> tuple[Literal["repo", "revision"], str] | None:
    """A repo, revision or file the Hub will not give: gated, private or missing, disabled."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, token = request.repo_id, _has_token()
    if isinstance(e, GatedRepoError) and not request.writing:
        page = f"{endpoint}/datasets/{repo_id}"
        if token and http_status(e) == 403:
            return "repo", (
                f"dataset {repo_id} is gated and the account of HF_TOKEN has not been granted access: ask at {page}"
            )
        return "repo", (
            f"dataset {repo_id} is gated: set HF_TOKEN to a token of an account granted access (ask at {page})"
        )
    if isinstance(e, RepositoryNotFoundError) and not isinstance(e, GatedRepoError):
        hint = "or HF_TOKEN cannot read it" if token else "if it is private, set HF_TOKEN to a token that can read it"
        if request.writing:
            hint = "check the repo id and revision; HF_TOKEN must be able to write to it"
        return "repo", f"dataset {repo_id} not found on {endpoint} ({hint})"
    if isinstance(e, RevisionNotFoundError):
        hint = "; check the repo id and revision" if request.writing else ""
        return "revision", f"revision {request.revision!r} not found in dataset {repo_id}{_refs(repo_id)}{hint}"
    if isinstance(e, RemoteEntryNotFoundError):
        return "repo", f"{request.where}: no such file on {endpoint}"
    if isinstance(e, DisabledRepoError):
        return "repo", f"dataset {repo_id} is disabled on {endpoint}"
    return None


# what to do after the Hub's other answers, by status: (reading items, pushing)
_HTTP_HINTS: dict[int, tuple[str | None, str]] = {
    403: (None, "the token cannot write to this repo (a read-only token, or another owner's repo)"),
    404: (None, "check the repo id and revision"),
    429: (
        None,
        "the Hub rate-limits commits (about 128 an hour per repo): wait and push again; finished files are not "
        "uploaded twice",
    ),
}


def _access_problem(e: Exception, request: Request, endpoint: str) -> str | None:
    """A Hub that cannot be reached or read, a token it refuses, or a cache that cannot be written."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        FileMetadataError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    where, cache = request.where, constants.HF_HUB_CACHE
    offline = f"HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests and reads only its cache ({cache})"
    if isinstance(e, IncompleteSnapshotError):
        return f"{offline}, and it holds only part of {where}: {first_line(e)}; run once without HF_HUB_OFFLINE"
    if isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled | httpx2.TransportError):
        if constants.is_offline_mode():
            if request.writing:
                return f"{offline}: unset HF_HUB_OFFLINE to push"
            return f"{offline}, which does not hold {where}: run once without HF_HUB_OFFLINE to download it"
        if request.writing:
            return f"cannot reach {endpoint} ({_root_cause(e)}): check the network and HF_ENDPOINT, then {RESUME}"
        return (
            f"cannot reach {endpoint} ({_root_cause(e)}) and {where} is not in the cache ({cache}): check the "
            "network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to read only the cache"
        )
    if isinstance(e, HfHubHTTPError):
        status = http_status(e)
        if status == 401:
            then = "set HF_TOKEN to a token with write access" if request.writing else "set a valid one, or unset it"
            return f"{endpoint} refused the token in HF_TOKEN (invalid credentials): {then}"
        message = e.server_message or first_line(e)
        answered = f"{endpoint} answered HTTP {status} for dataset {request.repo_id}: {message}"
        reading, writing = _HTTP_HINTS.get(status or 0, (None, RESUME))
        hint = writing if request.writing else reading
        return f"{answered}; {hint}" if hint else answered
    if isinstance(e, FileMetadataError):
        return f"{endpoint} does not answer like the Hub (check HF_ENDPOINT): {e}"
    if isinstance(e, OSError):  # the cache (disk full, no permission), or a file a push reads
        if request.writing:
            return f"{first_line(e)}; {RESUME}"
        return f"cannot write the Hugging Face cache ({cache}): {e}"
    return None


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
