"""Which data files a folder or Hub repo holds for a config and split, as ``datasets`` resolves them.

The README.md YAML ``configs:`` (``config_name``, ``data_files`` as a pattern, a list of patterns, or a list of
``{split, path}``; ``data_dir``; the config marked ``default: true``), else the file-name conventions
(``data/{split}-00000-of-00001.parquet``, ``{split}.jsonl``, ``train/`` folders, ...; everything else is
``train``), matched as fsspec globs over a listing of the repo's files (the caller lists them and reads the README).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from polypref import files
from polypref.errors import ConfigError

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


def either(suffixes: tuple[str, ...], word: str = "or") -> str:
    """``(".a", ".b", ".c")`` as ".a, .b or .c", for messages."""
    return ", ".join(suffixes[:-1]) + f" {word} {suffixes[-1]}"


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
    usable = [p for p in matched if file_suffix(p) in SUPPORTED_SUFFIXES]
    others = [p for p in matched if file_suffix(p) not in SUPPORTED_SUFFIXES and (explicit or file_suffix(p))]
    if usable and (not explicit or not others):
        return usable
    kinds = sorted({file_suffix(p) or "(no suffix)" for p in others})
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise ConfigError(
        CONFIG,
        [
            (
                "items.source",
                f"config {config!r}, split {split!r}: only {either(SUPPORTED_SUFFIXES, 'and')} data files can be "
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


def file_suffix(path: str) -> str:
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
