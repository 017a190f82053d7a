"""Reading the user's own files (specs, survey tables, items): every way a path can be wrong becomes a ConfigError.

A folder where a file belongs, a file that is not UTF-8, or one the OS will not open would otherwise surface as a
Python traceback from deep inside a reader; here they name the file and say what to fix.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import yaml

from polypref.errors import ConfigError

BOM = "\ufeff"


def read_bytes(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> bytes:
    """The file's bytes. ``source``/``field`` say where to report a bad path (default: the file itself)."""
    where = source if source is not None else str(path)
    if path.is_dir():
        raise ConfigError(where, [(field, f"{path} is a folder, not a file")])
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(where, [(field, f"{missing}: {path}")]) from None
    except OSError as e:
        raise ConfigError(where, [(field, f"cannot read {path}: {e.strerror or e}")]) from None


def check_file(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> None:
    """Refuse a path that is missing or a folder, for readers (Parquet) that open the file themselves."""
    where = source if source is not None else str(path)
    if path.is_dir():
        raise ConfigError(where, [(field, f"{path} is a folder, not a file")])
    if not path.is_file():
        raise ConfigError(where, [(field, f"{missing}: {path}")])


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text with a leading byte-order mark dropped (it is encoding metadata, not content).

    Anything else is kept exactly: no newline translation, no normalisation.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        byte = data[e.start : e.start + 1].hex()
        raise ConfigError(
            str(path), [(f"line {line}", f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8")]
        ) from None
    return text.removeprefix(BOM)


def read_text(path: Path, source: str | None = None, field: str = "", missing: str = "file not found") -> str:
    return decode(path, read_bytes(path, source, field, missing))


class _StrictLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; a user's file must not silently lose a label or a setting that way."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        # 1, 1.0 and true are equal Python keys: YAML would keep only the last of them
        if any(key == other for other in seen):
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.append(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str, field: str = "") -> Any:
    """YAML text as Python values, refusing duplicate keys; every way it can fail is a ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [(field, f"YAML syntax error: {where}{getattr(e, 'problem', e)}")]) from None
    except RecursionError:
        raise ConfigError(source, [(field, "YAML nested too deeply")]) from None
    except (ValueError, OverflowError) as e:  # a scalar Python cannot build: 2020-13-45, an int of 5,000 digits
        reason = str(e).split(";")[0]  # not Python's advice on sys.set_int_max_str_digits
        raise ConfigError(source, [(field, f"YAML value cannot be read: {reason}")]) from None


def read_yaml(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))


def is_blank(text: str) -> bool:
    """True for text a reader sees nothing of: empty, whitespace, or invisible format characters (a zero-width
    space, a byte-order mark) alone."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)
