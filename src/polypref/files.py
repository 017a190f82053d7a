"""Reading the user's own files (specs, survey tables, items): every way a path can be wrong becomes a ConfigError.

A folder where a file belongs, a file that is not UTF-8, or one the OS will not open would otherwise surface as a
Python traceback from deep inside a reader; here they name the file and say what to fix.
"""

from __future__ import annotations

from pathlib import Path

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
