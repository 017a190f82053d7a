"""Which files an item source names: a shipped item set, a file, a folder in Hub layout, or a Hub dataset.

``items.source`` is one of:

* a shipped item set by name (``gss_spending`` reads ``data/items/gss_spending.jsonl``);
* a path to a ``.jsonl`` or ``.parquet`` file;
* a folder in Hugging Face Hub layout (what ``datasets.load_dataset(FOLDER)`` reads);
* ``hf://datasets/ORG/NAME`` or ``hf://datasets/ORG/NAME@REVISION``, a dataset repo on the Hub (or on the
  server ``HF_ENDPOINT`` names). ``items.revision`` (a branch, tag or commit sha) may be given instead of ``@``.

A folder or repo is read the way ``datasets`` reads it: the README.md YAML ``configs:`` (``config_name``,
``data_files`` as a pattern, a list of patterns, or a list of ``{split, path}``; ``data_dir``; the config marked
``default: true``), else the file-name conventions (``data/{split}-00000-of-00001.parquet``, ``{split}.jsonl``,
``train/`` folders, ...; everything else is ``train``). Only ``.jsonl`` and ``.parquet`` data files are read.

Hub repos are read through huggingface_hub, so files land in its standard cache (``HF_HOME``/``HF_HUB_CACHE``),
a second run downloads nothing, and ``HF_HUB_OFFLINE=1`` reads the cache alone. Private and gated datasets need a
token in ``HF_TOKEN`` (or from ``hf auth login``); it is registered with ``polypref.secrets`` so no message shows
it. Every error is a ``ConfigError("config", [("items.source" | "items.config" | "items.split" |
"items.revision", reason)])``; the caller names the real config file.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from polypref import assets, files, secrets
from polypref.errors import ConfigError, first_line, http_status

SUPPORTED_SUFFIXES = (".jsonl", ".parquet")
CONFIG = "config"  # ConfigError source; the caller re-labels it with the config file's path

# datasets' default layout (datasets/data_files.py, fsspec >= 2023.12 patterns): the first of these that finds
# files decides the splits.
_SHARDED = "data/{split}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*"
_SPLIT_KEYWORDS = {
    "train": ["train", "training"],
    "validation": ["validation", "valid", "dev", "val"],
    "test": ["test", "testing", "eval", "evaluation"],
}
_SEP = "[-._ 0-9]"
_IN_DIR_NAME = ["**/{k}/**", "**/{k}" + _SEP + "*/**", "**/*" + _SEP + "{k}/**", "**/*" + _SEP + "{k}" + _SEP + "*/**"]
_IN_FILE_NAME = ["**/{k}" + _SEP + "*", "**/*" + _SEP + "{k}" + _SEP + "*"]
_DEFAULT_PATTERNS = [
    {split: [p.format(k=k) for k in keywords for p in _IN_DIR_NAME] for split, keywords in _SPLIT_KEYWORDS.items()},
    {split: [p.format(k=k) for k in keywords for p in _IN_FILE_NAME] for split, keywords in _SPLIT_KEYWORDS.items()},
    {"train": ["**"]},
]
# Never data files, unless a pattern names them (datasets' FILES_TO_IGNORE).
_NOT_DATA = {
    "README.md",
    "config.json",
    "dataset_info.json",
    "dataset_infos.json",
    "dummy_data.zip",
    "dataset_dict.json",
}
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


Kind = Literal["shipped", "file", "folder", "hub"]


@dataclass(frozen=True)
class SourceFile:
    path: Path  # a local file (for Hub sources: inside the huggingface_hub cache)
    name: str  # how the user knows it: the path they gave, or the path inside the repo


@dataclass(frozen=True)
class ItemSource:
    kind: Kind
    files: tuple[SourceFile, ...]
    provenance: dict[str, Any] = field(default_factory=dict)  # for the dataset card (see _source); never a token


def _source(kind: Kind, files_: tuple[SourceFile, ...], source: str, **hub: Any) -> ItemSource:
    """An ItemSource whose provenance has the same keys for every kind (None where they do not apply):
    source, kind, repo, revision (the resolved commit sha), requested_revision, config, split, files."""
    keys = ("repo", "revision", "requested_revision", "config", "split")
    provenance = {"source": source, "kind": kind, **{k: hub.get(k) for k in keys}, "files": [f.name for f in files_]}
    return ItemSource(kind, files_, provenance)


def locate_source(
    source: str, config: str | None = None, split: str = "train", revision: str | None = None
) -> ItemSource:
    """The files ``source`` names for ``config`` and ``split`` (see the module docstring)."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(CONFIG, [("items.source", "must name a shipped item set, a file, a folder or a Hub dataset")])
    _check_name("items.config", config, optional=True)
    _check_name("items.split", split)
    _check_name("items.revision", revision, optional=True)
    if source.startswith("hf://"):
        return _locate_hub(source, config, split, revision)
    if revision is not None:
        raise ConfigError(CONFIG, [("items.revision", "only a Hub dataset (hf://datasets/ORG/NAME) has revisions")])
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() and suffix not in SUPPORTED_SUFFIXES:  # "x.jsonl/" is a mistake, not a dataset
        return _locate_folder(path, source, config, split)
    for name, value, default in (("items.config", config, None), ("items.split", split, "train")):
        if value != default:
            raise ConfigError(CONFIG, [(name, f"{source} is one file: {name} applies to a folder or Hub dataset")])
    if suffix in SUPPORTED_SUFFIXES:
        files.check_file(path, CONFIG, "items.source", missing="items file not found")
        return _source("file", (SourceFile(path, source),), source)
    if path.is_file():
        raise ConfigError(
            CONFIG, [("items.source", f"{source}: items must be a {' or '.join(SUPPORTED_SUFFIXES)} file")]
        )
    shipped = assets.path("data", "items", f"{source}.jsonl")
    if not suffix and "/" not in source and os.sep not in source and shipped.is_file():
        name = f"data/items/{source}.jsonl"
        return _source("shipped", (SourceFile(shipped, name),), source)
    names = sorted(p.stem for p in assets.path("data", "items").glob("*.jsonl"))
    raise ConfigError(
        CONFIG,
        [
            (
                "items.source",
                f"items file not found: {source!r} is not a shipped item set, a .jsonl or .parquet file, a folder, "
                f"or hf://datasets/ORG/NAME (shipped item sets: {names})",
            )
        ],
    )


def _check_name(field_name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(CONFIG, [(field_name, "must be a non-empty name")])


# ---- folders ------------------------------------------------------------------------------------------------


def _locate_folder(folder: Path, source: str, config: str | None, split: str) -> ItemSource:
    try:
        listing = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    except OSError as e:
        raise ConfigError(CONFIG, [("items.source", f"cannot list {source}: {e.strerror or e}")]) from None
    readme = folder / "README.md"
    text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing else None
    chosen, paths = resolve_layout(listing, text, config, split, readme=str(Path(source) / "README.md"))
    found = tuple(SourceFile(folder / p, str(Path(source) / p)) for p in paths)
    return _source("folder", found, source, config=chosen, split=split)


# ---- Hub layout: configs, splits, patterns ------------------------------------------------------------------


def resolve_layout(
    listing: list[str], readme_text: str | None, config: str | None, split: str, readme: str = "README.md"
) -> tuple[str, list[str]]:
    """(config name, data files of ``split``) for a repo or folder whose files are ``listing`` (relative
    POSIX paths) and whose README.md holds ``readme_text``."""
    configs = _read_configs(readme_text, readme) if readme_text is not None else []
    if configs:
        names = [c["config_name"] for c in configs]
        if config is None:
            chosen = [c for c in configs if c["default"]] or [c for c in configs if c["config_name"] == "default"]
            if not chosen and len(configs) == 1:
                chosen = configs
            if not chosen:
                raise ConfigError(
                    CONFIG,
                    [
                        (
                            "items.config",
                            f"the dataset has several configs and none is the default: choose one of {names}",
                        )
                    ],
                )
            entry = chosen[0]
        else:
            entry = next((c for c in configs if c["config_name"] == config), {})
            if not entry:
                raise ConfigError(CONFIG, [("items.config", f"no config {config!r}; the dataset's configs: {names}")])
        name, base = entry["config_name"], entry.get("data_dir", "").strip("/")
        patterns = entry.get("data_files")
        explicit = patterns is not None
        if patterns is None:
            patterns = _default_patterns(listing, base)
        elif base:
            patterns = {s: [f"{base}/{p}" for p in ps] for s, ps in patterns.items()}
    else:
        if config not in (None, "default"):
            raise ConfigError(
                CONFIG,
                [("items.config", f"no config {config!r}: {readme} declares no configs, so only 'default' exists")],
            )
        name, explicit = "default", False
        patterns = _default_patterns(listing, "")
    if not patterns:
        raise ConfigError(CONFIG, [("items.source", "no data files found")])
    if split not in patterns:
        raise ConfigError(
            CONFIG, [("items.split", f"no split {split!r} in config {name!r}; its splits: {list(patterns)}")]
        )
    matched = _match(listing, patterns[split])
    if not matched:
        raise ConfigError(
            CONFIG,
            [("items.source", f"config {name!r}, split {split!r}: no file matches {patterns[split]} (from {readme})")],
        )
    return name, _data_files(matched, explicit, name, split)


def _data_files(matched: list[str], explicit: bool, config: str, split: str) -> list[str]:
    usable = [p for p in matched if _suffix(p) in SUPPORTED_SUFFIXES]
    others = [p for p in matched if _suffix(p) not in SUPPORTED_SUFFIXES and (explicit or _suffix(p))]
    if usable and (not explicit or not others):
        return usable
    kinds = sorted({_suffix(p) or "(no suffix)" for p in others})
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise ConfigError(
        CONFIG,
        [
            (
                "items.source",
                f"config {config!r}, split {split!r}: only {' and '.join(SUPPORTED_SUFFIXES)} data files can be read, "
                f"found {', '.join(kinds)} ({shown})",
            )
        ],
    )


def _read_configs(text: str, readme: str) -> list[dict[str, Any]]:
    """The README's ``configs:`` list, checked; each entry's data_files as {split: [patterns]}."""
    if not text.startswith("---"):
        return []
    lines = text.split("\n")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "---"), None)
    if lines[0].rstrip() != "---" or end is None:
        return []
    try:
        header = files.parse_yaml("\n".join(lines[1:end]), CONFIG, "items.source")
    except ConfigError as e:
        raise ConfigError(CONFIG, [("items.source", f"{readme} YAML header: {e.problems[0][1]}")]) from None
    raw = header.get("configs") if isinstance(header, dict) else None
    if raw is None:
        return []

    def bad(why: str) -> ConfigError:
        return ConfigError(CONFIG, [("items.source", f"{readme}: configs: {why}")])

    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise bad("must be a list of mappings with config_name and data_files")
    out = []
    for index, entry in enumerate(raw):
        name = entry.get("config_name", "default")
        if not isinstance(name, str) or not name:
            raise bad(f"entry {index}: config_name must be text")
        checked: dict[str, Any] = {"config_name": name, "default": entry.get("default") is True}
        if "data_dir" in entry:
            if not isinstance(entry["data_dir"], str):
                raise bad(f"{name}: data_dir must be text")
            checked["data_dir"] = entry["data_dir"]
        if "data_files" in entry:
            checked["data_files"] = _split_patterns(
                entry["data_files"], lambda why, n=name: bad(f"{n}: data_files {why}")
            )
        out.append(checked)
    names = [c["config_name"] for c in out]
    if len(set(names)) != len(names):
        raise bad(f"config names repeat: {names}")
    return out


def _split_patterns(value: Any, bad: Any) -> dict[str, list[str]]:
    """data_files as datasets accepts it: a pattern, a list of patterns (split 'train'), a list of
    {split, path} or a mapping split -> pattern(s)."""

    def patterns(v: Any) -> list[str]:
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v or not all(isinstance(p, str) and p for p in v):
            raise bad("must be a path pattern or a list of them")
        if any("://" in p for p in v):
            raise bad("must be paths inside the dataset, not URLs")
        return [p.lstrip("/").removeprefix("./") for p in v]

    if isinstance(value, dict):
        return {str(split): patterns(v) for split, v in value.items()}
    if isinstance(value, list) and any(isinstance(p, dict) for p in value):
        out: dict[str, list[str]] = {}
        for item in value:
            if not isinstance(item, dict) or set(item) != {"split", "path"}:
                raise bad("entries must each be {split: NAME, path: PATTERN}")
            if str(item["split"]) in out:
                raise bad(f"split {item['split']!r} appears twice")
            out[str(item["split"])] = patterns(item["path"])
        return out
    return {"train": patterns(value)}


def _default_patterns(listing: list[str], base: str) -> dict[str, list[str]]:
    prefix = f"{base}/" if base else ""
    sharded = re.compile(re.escape(prefix) + r"data/(?P<split>[^/]+?)-\d{5}-of-\d{5}[^/]*\.[^/]+\Z")
    found = {m["split"] for p in listing if (m := sharded.match(p))}
    found = {s for s in found if _SPLIT_NAME.match(s)}
    if found:
        ordered = [s for s in _SPLIT_KEYWORDS if s in found] + sorted(found - set(_SPLIT_KEYWORDS))
        return {s: [prefix + _SHARDED.format(split=s)] for s in ordered}
    for table in _DEFAULT_PATTERNS:
        splits = {
            split: [prefix + p for p in patterns]
            for split, patterns in table.items()
            if any(_match(listing, [prefix + p], first=True) for p in patterns)
        }
        if splits:
            return splits
    return {}


def _match(listing: list[str], patterns: list[str], first: bool = False) -> list[str]:
    """Files matching any pattern, in listing order, skipping what datasets skips unless a pattern names it:
    README.md and other metadata files, hidden files and folders, ``__special__`` folders."""
    found: set[str] = set()
    for pattern in patterns:
        regex, name = _glob_regex(pattern), pattern.rsplit("/", 1)[-1]
        hidden, special = _count(pattern, "."), _count(pattern, "__", parent=True)
        for path in listing:
            if path in found or not regex.match(path):
                continue
            if path.rsplit("/", 1)[-1] in _NOT_DATA and path.rsplit("/", 1)[-1] != name:
                continue
            if _count(path, ".") == hidden and _count(path, "__", parent=True) == special:
                found.add(path)
                if first:  # only whether anything matches
                    return [path]
    return [p for p in listing if p in found]


def _count(path: str, start: str, parent: bool = False) -> int:
    """Path parts (folders only, with ``parent``) starting with ``start``; "." and ".." do not count."""
    parts = path.strip("/").split("/")
    return sum(1 for p in (parts[:-1] if parent else parts) if p.startswith(start) and p not in (".", ".."))


def _suffix(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fsspec's glob: ``*`` and ``?`` stay inside one folder, a ``**`` segment spans any number of them."""
    parts = pattern.strip("/").split("/")
    out = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(part) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def _segment_regex(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            while i + 1 < len(part) and part[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(part) and part[j] == "!":
                j += 1
            if j < len(part) and part[j] == "]":
                j += 1
            j = part.find("]", j)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = part[i + 1 : j].replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# ---- the Hub ------------------------------------------------------------------------------------------------


def _locate_hub(source: str, config: str | None, split: str, revision: str | None) -> ItemSource:
    from huggingface_hub import snapshot_download
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
    repo_id, wanted = uri.id, revision or uri.revision
    _register_tokens()
    with _hub_errors(repo_id, wanted), _quiet_no_match():
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=wanted, allow_patterns=["README.md"]))
        sha = folder.name
        listing = _repo_files(repo_id, sha, folder)
        readme = folder / "README.md"
        text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing and readme.is_file() else None
        chosen, paths = resolve_layout(listing, text, config, split, readme=f"{source} README.md")
        folder = Path(
            snapshot_download(
                repo_id, repo_type="dataset", revision=sha, allow_patterns=[glob.escape(p) for p in paths]
            )
        )
    found = tuple(SourceFile(folder / p, p) for p in paths)
    return _source(
        "hub",
        found,
        f"hf://datasets/{repo_id}",
        repo=repo_id,
        revision=sha,
        requested_revision=wanted or "main",
        config=chosen,
        split=split,
    )


def _repo_files(repo_id: str, sha: str, folder: Path) -> list[str]:
    """Every file of the repo at ``sha``: from the listing huggingface_hub caches, else from the Hub (online) or
    from what the cached snapshot holds (offline)."""
    from huggingface_hub import HfApi, constants, get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        return sorted(f.path for f in get_cached_repo_tree(repo_id, repo_type="dataset", revision=sha))
    except CachedRepoTreeNotFoundError:
        pass
    if constants.is_offline_mode():
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(HfApi().list_repo_files(repo_id, repo_type="dataset", revision=sha))


def _register_tokens() -> None:
    """Tokens huggingface_hub may send are secrets: no message polypref prints may show them."""
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secrets.register(os.environ.get(name))
    with suppress(OSError, UnicodeDecodeError):
        secrets.register(Path(constants.HF_TOKEN_PATH).read_text().strip())


@contextmanager
def _quiet_no_match() -> Iterator[None]:
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
def _hub_errors(repo_id: str, revision: str | None) -> Iterator[None]:
    """huggingface_hub's exceptions as ConfigErrors that say what to do."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        DisabledRepoError,
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = secrets.redact_url(constants.ENDPOINT)
    where = f"{repo_id}@{revision}" if revision else repo_id
    token = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    offline = (
        "HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests and reads only its cache "
        f"({constants.HF_HUB_CACHE})"
    )
    try:
        yield
    except GatedRepoError as e:
        page = f"{endpoint}/datasets/{repo_id}"
        if token and http_status(e) == 403:
            reason = (
                f"dataset {repo_id} is gated and the account of HF_TOKEN has not been granted access: ask at {page}"
            )
        else:
            reason = f"dataset {repo_id} is gated: set HF_TOKEN to a token of an account granted access (ask at {page})"
        raise _hub_error("items.source", reason) from None
    except RepositoryNotFoundError:
        hint = "or HF_TOKEN cannot read it" if token else "if it is private, set HF_TOKEN to a token that can read it"
        raise _hub_error("items.source", f"dataset {repo_id} not found on {endpoint} ({hint})") from None
    except RevisionNotFoundError:
        raise _hub_error(
            "items.revision", f"revision {revision!r} not found in dataset {repo_id}{_refs(repo_id)}"
        ) from None
    except DisabledRepoError:
        raise _hub_error("items.source", f"dataset {repo_id} is disabled on {endpoint}") from None
    except IncompleteSnapshotError as e:
        reason = f"{offline}, and it holds only part of {where}: {first_line(e)}; run once without HF_HUB_OFFLINE"
        raise _hub_error("items.source", reason) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, httpx2.TransportError) as e:
        if constants.is_offline_mode():
            reason = f"{offline}, which does not hold {where}: run once without HF_HUB_OFFLINE to download it"
        else:
            reason = (
                f"cannot reach {endpoint} ({_root_cause(e)}) and {where} is not in the cache "
                f"({constants.HF_HUB_CACHE}): check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to read "
                "only the cache"
            )
        raise _hub_error("items.source", reason) from None
    except HfHubHTTPError as e:
        if http_status(e) == 401:
            reason = f"{endpoint} refused the token in HF_TOKEN (invalid credentials): set a valid one, or unset it"
        else:
            reason = (
                f"{endpoint} answered HTTP {http_status(e)} for dataset {repo_id}: {e.server_message or first_line(e)}"
            )
        raise _hub_error("items.source", reason) from None
    except FileMetadataError as e:
        raise _hub_error("items.source", f"{endpoint} does not answer like the Hub (check HF_ENDPOINT): {e}") from None
    except OSError as e:  # the cache: disk full, no permission
        raise _hub_error(
            "items.source", f"cannot write the Hugging Face cache ({constants.HF_HUB_CACHE}): {e}"
        ) from None


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
