"""The Hub through huggingface_hub: which repo a source names, its files, and its errors as ConfigErrors.

Every error is a ``ConfigError("config", [("items.source" | "items.revision", reason)])`` that says what to do
(gated, private, missing, offline, unreachable), worded by ``items.hub_errors``, the table the push shares; no
message shows a token (tokens are registered with ``polypref.safety.secrets``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polypref.errors import ConfigError, first_line
from polypref.items.datafiles import CONFIG
from polypref.items.hub_errors import Request, hub_problem


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
    """huggingface_hub's exceptions as ConfigErrors that say what to do (``items.hub_errors``' table); ``file``:
    the one being read."""
    try:
        yield
    except Exception as e:
        problem = hub_problem(e, Request(repo_id, revision, file))
        if problem is None:
            raise
        field_name = "items.revision" if problem.about == "revision" else "items.source"
        raise ConfigError(CONFIG, [(field_name, problem.reason)]) from None
