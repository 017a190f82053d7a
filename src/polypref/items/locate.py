"""Which files an item source names: a shipped item set, a file, a folder in Hub layout, or a Hub dataset.

``items.source`` is one of:

* a shipped item set by name (``gss_spending`` reads ``data/items/gss_spending.jsonl``);
* a path to a ``.jsonl``, ``.parquet``, ``.json`` or ``.csv`` file;
* a folder in Hugging Face Hub layout (what ``datasets.load_dataset(FOLDER)`` reads);
* ``hf://datasets/ORG/NAME`` or ``hf://datasets/ORG/NAME@REVISION``, a dataset repo on the Hub (or on the
  server ``HF_ENDPOINT`` names). ``items.revision`` (a branch, tag or commit sha) may be given instead of ``@``.

A folder or repo is read the way ``datasets`` reads it: the README.md YAML ``configs:`` (``config_name``,
``data_files`` as a pattern, a list of patterns, or a list of ``{split, path}``; ``data_dir``; the config marked
``default: true``), else the file-name conventions (``data/{split}-00000-of-00001.parquet``, ``{split}.jsonl``,
``train/`` folders, ...; everything else is ``train``). ``.jsonl``, ``.parquet``, ``.json`` and ``.csv`` data
files are read. ``items.split`` is a split name or an expression as ``datasets`` writes them (``train+test``,
``train[:1000]``, ``train[10%:20%]``, ``test[-5%:](pct1_dropremainder)``): each term's rows are that slice of its
split's files, in file order; one file is split ``train``.

Hub repos are read through huggingface_hub, so files land in its standard cache (``HF_HOME``/``HF_HUB_CACHE``),
a second run downloads nothing, and ``HF_HUB_OFFLINE=1`` reads the cache alone. A ``lazy`` source (a limit, a
sliced split) lists its files without downloading them: the reader ``fetch``es each file only when it needs its
rows, or reads a large Parquet file in place (``open_in_place``: HTTP range requests for its footer and the row
groups it needs). Private and gated datasets need a token in ``HF_TOKEN`` (or from ``hf auth login``); it is
registered with ``polypref.secrets`` so no message shows it. Every error is a ``ConfigError("config",
[("items.source" | "items.config" | "items.split" | "items.revision", reason)])``; the caller names the real
config file.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from polypref import assets, files, secrets
from polypref.errors import ConfigError, first_line, http_status

SUPPORTED_SUFFIXES = (".jsonl", ".parquet", ".json", ".csv")
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
# One term of a split expression, as datasets parses it (datasets/arrow_reader.py: _SUB_SPEC_RE).
_SPLIT_TERM = re.compile(
    r"^(?P<split>\w+(\.\w+)*)(\[(?:(?P<start>-?[\d_]+)(?P<start_pct>%)?)?:(?:(?P<stop>-?[\d_]+)(?P<stop_pct>%)?)?\])?"
    r"(\((?P<rounding>[^)]*)\))?$"
)
_ROUNDINGS = ("closest", "pct1_dropremainder")
# A Hub Parquet file this large that a lazy read needs only part of is read in place (range requests) rather
# than downloaded; a smaller one is downloaded whole, into the cache, where a later or offline run finds it.
RANGE_READ_MIN_BYTES = 32 << 20


Kind = Literal["shipped", "file", "folder", "hub"]


@dataclass(frozen=True)
class HubFile:
    """Where a Hub source's file is: enough to download it, or read it in place, later."""

    repo_id: str
    revision: str  # the resolved commit sha
    path: str  # inside the repo
    size: int | None = None  # bytes, from the repo listing


@dataclass(frozen=True)
class SourceFile:
    path: Path  # a local file (for Hub sources: inside the huggingface_hub cache, once fetched)
    name: str  # how the user knows it: the path they gave, or the path inside the repo
    remote: HubFile | None = None  # a Hub source's file; None for a local one


@dataclass(frozen=True)
class SplitTerm:
    """One term of a split expression: ``train[10%:20%]`` is SplitTerm("train", 10, 20, percent=True)."""

    split: str
    start: int | None = None
    stop: int | None = None
    percent: bool = False
    rounding: str | None = None  # percent slices: "closest" (None) or "pct1_dropremainder", as datasets rounds

    @property
    def sliced(self) -> bool:
        return self.start is not None or self.stop is not None

    @property
    def needs_total(self) -> bool:
        """Whether the bounds depend on the split's row count (a percentage, or counted from the end)."""
        return self.percent or any(b is not None and b < 0 for b in (self.start, self.stop))

    def bounds(self, total: int | None = None) -> tuple[int, int | None]:
        """[start, stop) as rows of the split, as datasets computes them (arrow_reader._rel_to_abs_instr); stop
        None is the split's end. ``total``, the split's rows, is needed only when ``needs_total``."""
        if not self.needs_total:
            return self.start or 0, self.stop
        assert total is not None
        if self.percent and self.rounding == "pct1_dropremainder" and total < 100:
            raise ConfigError(
                CONFIG,
                [("items.split", f"pct1_dropremainder needs a split of 100 rows or more; {self.split} has {total}")],
            )
        step = total // 100 if self.rounding == "pct1_dropremainder" else None

        def absolute(bound: int | None, default: int) -> int:
            if bound is None:
                return default
            if self.percent:
                bound = bound * step if step is not None else round(bound * total / 100)
            return min(max(total + bound, 0) if bound < 0 else bound, total)

        return absolute(self.start, 0), absolute(self.stop, total)


@dataclass(frozen=True)
class SourcePart:
    """One term of the split expression, with the files of its split in reading order."""

    term: SplitTerm
    files: tuple[SourceFile, ...]


@dataclass(frozen=True)
class ItemSource:
    kind: Kind
    files: tuple[SourceFile, ...]  # every file the split expression names, each once, in reading order
    provenance: dict[str, Any] = field(default_factory=dict)  # for the dataset card (see _source); never a token
    parts: tuple[SourcePart, ...] = ()  # what to read of them: one part per term of the split expression


def _source(kind: Kind, parts: list[tuple[SplitTerm, list[SourceFile]]], source: str, **hub: Any) -> ItemSource:
    """An ItemSource whose provenance has the same keys for every kind (None where they do not apply):
    source, kind, repo, revision (the resolved commit sha), requested_revision, config, split, files."""
    files_ = tuple(dict.fromkeys(f for _, part in parts for f in part))
    keys = ("repo", "revision", "requested_revision", "config", "split")
    provenance = {"source": source, "kind": kind, **{k: hub.get(k) for k in keys}, "files": [f.name for f in files_]}
    return ItemSource(kind, files_, provenance, tuple(SourcePart(t, tuple(fs)) for t, fs in parts))


def locate_source(
    source: str, config: str | None = None, split: str = "train", revision: str | None = None, lazy: bool = False
) -> ItemSource:
    """The files ``source`` names for ``config`` and ``split`` (see the module docstring). ``lazy`` (always, for a
    sliced split): a Hub dataset's files are listed, not downloaded; the reader fetches what it reads."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(CONFIG, [("items.source", "must name a shipped item set, a file, a folder or a Hub dataset")])
    _check_name("items.config", config, optional=True)
    _check_name("items.split", split)
    _check_name("items.revision", revision, optional=True)
    terms = parse_split(split)
    if source.startswith("hf://"):
        return _locate_hub(source, config, split, terms, revision, lazy or any(t.sliced for t in terms))
    if revision is not None:
        raise ConfigError(CONFIG, [("items.revision", "only a Hub dataset (hf://datasets/ORG/NAME) has revisions")])
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() and suffix not in SUPPORTED_SUFFIXES:  # "x.jsonl/" is a mistake, not a dataset
        return _locate_folder(path, source, config, split, terms)
    if config is not None:
        raise ConfigError(
            CONFIG, [("items.config", f"{source} is one file: items.config applies to a folder or Hub dataset")]
        )
    if any(t.split != "train" for t in terms):
        reason = (
            f"{source} is one file: items.split applies to a folder or Hub dataset (a file is split 'train', "
            "which may be sliced: train[:1000])"
        )
        raise ConfigError(CONFIG, [("items.split", reason)])
    shown = split if split != "train" else None
    if suffix in SUPPORTED_SUFFIXES:
        files.check_file(path, CONFIG, "items.source", missing="items file not found")
        return _source("file", [(t, [SourceFile(path, source)]) for t in terms], source, split=shown)
    if path.is_file():
        raise ConfigError(CONFIG, [("items.source", f"{source}: items must be a {_either(SUPPORTED_SUFFIXES)} file")])
    shipped = assets.path("data", "items", f"{source}.jsonl")
    if not suffix and "/" not in source and os.sep not in source and shipped.is_file():
        found = SourceFile(shipped, f"data/items/{source}.jsonl")
        return _source("shipped", [(t, [found]) for t in terms], source, split=shown)
    names = sorted(p.stem for p in assets.path("data", "items").glob("*.jsonl"))
    raise ConfigError(
        CONFIG,
        [
            (
                "items.source",
                f"items file not found: {source!r} is not a shipped item set, a {_either(SUPPORTED_SUFFIXES)} "
                f"file, a folder, or hf://datasets/ORG/NAME (shipped item sets: {names})",
            )
        ],
    )


def parse_split(text: str) -> tuple[SplitTerm, ...]:
    """``items.split`` as datasets reads a split expression (ReadInstruction.from_spec): terms joined by ``+``,
    each ``SPLIT``, ``SPLIT[START:STOP]`` (rows, negative from the end) or the same in percent, optionally with
    ``(closest)`` or ``(pct1_dropremainder)`` rounding."""
    terms = []
    for part in re.split(r"\s*\+\s*", text.strip()):
        match = _SPLIT_TERM.match(part)
        if match is None:
            raise _bad_split(text, f"{part!r} is not SPLIT or SPLIT[START:STOP]")
        percent = bool(match["start_pct"] or match["stop_pct"])
        rounding = match["rounding"]
        try:
            start, stop = (None if match[k] is None else int(match[k]) for k in ("start", "stop"))
        except ValueError:
            raise _bad_split(text, f"{part!r}: slice bounds must be whole numbers") from None
        if rounding is not None and (not percent or rounding not in _ROUNDINGS):
            raise _bad_split(text, f"{part!r}: rounding is {' or '.join(_ROUNDINGS)}, and only for percent slices")
        if percent and any(b is not None and abs(b) > 100 for b in (start, stop)):
            raise _bad_split(text, f"{part!r}: percentages lie between -100 and 100")
        terms.append(SplitTerm(match["split"], start, stop, percent, rounding))
    roundings = {t.rounding or "closest" for t in terms if t.percent}
    if len(roundings) > 1:
        raise _bad_split(text, "percent slices joined by + must round alike")
    return tuple(terms)


def _bad_split(text: str, why: str) -> ConfigError:
    example = "train, train+test, train[:1000], train[10%:20%]"
    return ConfigError(CONFIG, [("items.split", f"cannot read {text!r}: {why} (e.g. {example})")])


def _either(suffixes: tuple[str, ...], word: str = "or") -> str:
    return ", ".join(suffixes[:-1]) + f" {word} {suffixes[-1]}"


def _check_name(field_name: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(CONFIG, [(field_name, "must be a non-empty name")])


# ---- folders ------------------------------------------------------------------------------------------------


def _locate_folder(
    folder: Path, source: str, config: str | None, split: str, terms: tuple[SplitTerm, ...]
) -> ItemSource:
    try:
        listing = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    except OSError as e:
        raise ConfigError(CONFIG, [("items.source", f"cannot list {source}: {e.strerror or e}")]) from None
    readme = folder / "README.md"
    text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing else None
    chosen, parts = _resolve_terms(listing, text, config, terms, str(Path(source) / "README.md"))
    found = [(t, [SourceFile(folder / p, str(Path(source) / p)) for p in paths]) for t, paths in parts]
    return _source("folder", found, source, config=chosen, split=split)


def _resolve_terms(
    listing: list[str], readme_text: str | None, config: str | None, terms: tuple[SplitTerm, ...], readme: str
) -> tuple[str, list[tuple[SplitTerm, list[str]]]]:
    """(config name, each term with its split's data files): resolve_layout for each split the expression names."""
    parts = []
    for term in terms:
        chosen, paths = resolve_layout(listing, readme_text, config, term.split, readme=readme)
        parts.append((term, paths))
    return chosen, parts


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
                f"config {config!r}, split {split!r}: only {_either(SUPPORTED_SUFFIXES, 'and')} data files can be "
                f"read, found {', '.join(kinds)} ({shown})",
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


def _locate_hub(
    source: str, config: str | None, split: str, terms: tuple[SplitTerm, ...], revision: str | None, lazy: bool
) -> ItemSource:
    from huggingface_hub import snapshot_download

    repo_id, wanted = _hub_repo(source, revision)
    _register_tokens()
    with _hub_errors(repo_id, wanted), _quiet_no_match():
        folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=wanted, allow_patterns=["README.md"]))
        sha = folder.name
        sizes = _repo_files(repo_id, sha, folder)
        listing = sorted(sizes)
        readme = folder / "README.md"
        text = files.read_text(readme, CONFIG, "items.source") if "README.md" in listing and readme.is_file() else None
        chosen, parts = _resolve_terms(listing, text, config, terms, f"{source} README.md")
        if not lazy:  # every file now, several at a time; a lazy reader fetches each as it reads it
            paths = dict.fromkeys(p for _, ps in parts for p in ps)
            patterns = [glob.escape(p) for p in paths]
            folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=sha, allow_patterns=patterns))
    found = [(t, [SourceFile(folder / p, p, HubFile(repo_id, sha, p, sizes.get(p))) for p in ps]) for t, ps in parts]
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


def _hub_repo(source: str, revision: str | None) -> tuple[str, str | None]:
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


def _repo_files(repo_id: str, sha: str, folder: Path) -> dict[str, int | None]:
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


# ---- reading a Hub file later: download it, or read it in place ---------------------------------------------


def fetch(f: SourceFile) -> SourceFile:
    """``f`` as a local file: a Hub file not in the cache yet is downloaded into it (huggingface_hub's own, so a
    later run, or an offline one, finds it there)."""
    if f.remote is None or f.path.is_file():
        return f
    from huggingface_hub import hf_hub_download

    hub = f.remote
    try:
        with _hub_errors(hub.repo_id, hub.revision, hub.path):
            path = hf_hub_download(hub.repo_id, hub.path, repo_type="dataset", revision=hub.revision)
    except ConfigError as e:
        if _suffix(hub.path) != ".parquet" or (hub.size or 0) < RANGE_READ_MIN_BYTES:
            raise
        field_name, reason = e.problems[0]
        why = (
            "(a limited read reads a Parquet file this large in place, caching nothing: a run without items.limit "
            "downloads it)"
        )
        raise ConfigError(CONFIG, [(field_name, f"{reason} {why}")]) from None
    return replace(f, path=Path(path))


def reads_in_place(f: SourceFile) -> bool:
    """Whether a lazy reader should read ``f`` in place: a Hub Parquet file of RANGE_READ_MIN_BYTES or more, not
    in the cache, while online (offline, only the cache can be read)."""
    from huggingface_hub import constants

    hub = f.remote
    return (
        hub is not None
        and _suffix(hub.path) == ".parquet"
        and (hub.size or 0) >= RANGE_READ_MIN_BYTES
        and not f.path.is_file()
        and not constants.is_offline_mode()
    )


def open_in_place(f: SourceFile) -> BinaryIO:
    """A Hub file opened for HTTP range reads (HfFileSystem without read-ahead: a read fetches only the bytes it
    asks for, so pyarrow gets a Parquet footer and the row groups it decodes, not the file). The caller closes it."""
    from huggingface_hub import HfFileSystem

    hub = f.remote
    assert hub is not None
    with _hub_errors(hub.repo_id, hub.revision, hub.path):
        return HfFileSystem().open(f"datasets/{hub.repo_id}@{hub.revision}/{hub.path}", "rb", cache_type="none")


def read_error(f: SourceFile, e: Exception) -> ConfigError | None:
    """The ConfigError a failure of huggingface_hub or the network while reading Hub file ``f`` in place means
    (as _hub_errors words it); None for any other error, which is the file's own."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if f.remote is None or not isinstance(e, HfHubHTTPError | httpx2.TransportError | OfflineModeIsEnabled):
        return None
    try:
        with _hub_errors(f.remote.repo_id, f.remote.revision, f.remote.path):
            raise e
    except ConfigError as mapped:
        return mapped


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
def _hub_errors(repo_id: str, revision: str | None, file: str | None = None) -> Iterator[None]:
    """huggingface_hub's exceptions as ConfigErrors that say what to do; ``file``: the one being read."""
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
    where = (f"{repo_id}@{revision}" if revision else repo_id) + (f" {file}" if file else "")
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
