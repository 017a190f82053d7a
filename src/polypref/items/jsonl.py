"""Strict JSON Lines: one object per "\\n"-ended line, duplicate keys refused, errors naming the line.

Lines end at "\\n" only (a "\\r" before it is dropped), as JSON Lines says, so U+2028, U+0085 and other Unicode
line breaks inside a JSON string stay text; lines of only spaces and tabs are skipped. A key twice in one object
is an error, not "the last one wins".
"""

from __future__ import annotations

import json
from typing import Any

from polypref.errors import ConfigError


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def parse_line(line: str, source: str, where: str) -> Any:
    """One JSON value; ConfigError(source, [(where, reason)]) when it is not valid strict JSON."""
    try:
        return json.loads(line, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise ConfigError(source, [(where, f"invalid JSON: {e.msg} (column {e.colno})")]) from None
    except _DuplicateKey as e:
        raise ConfigError(source, [(where, f"key {e.args[0]!r} appears twice in one object")]) from None
    except RecursionError:
        raise ConfigError(source, [(where, "JSON nested too deeply")]) from None
    except ValueError as e:  # valid JSON Python will not build, e.g. an integer of 5,000 digits
        raise ConfigError(source, [(where, f"JSON value cannot be read: {e}")]) from None
