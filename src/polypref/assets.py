"""Where the asset folders (personas/, prompts/, schemas/, data/, flows/) are: checkout or installed wheel."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_FOLDERS = ("personas", "prompts", "schemas", "data", "flows")


@cache
def root() -> Path:
    """The folder that holds the asset folders.

    An installed wheel carries them in polypref/_assets (hatch force-include); a checkout has them at the
    repository root, two levels above this file's package.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_assets", here.parent.parent):
        if all((candidate / name).is_dir() for name in _FOLDERS):
            return candidate
    raise RuntimeError(f"polypref assets not found next to {here}; reinstall the package")


def path(folder: str, *parts: str) -> Path:
    """Path of an asset, e.g. ``path("personas", "gss_spending.yaml")``."""
    if folder not in _FOLDERS:
        raise ValueError(f"unknown asset folder {folder!r}; expected one of {_FOLDERS}")
    return root().joinpath(folder, *parts)


def named_or_path(name_or_path: str, folder: str, *parts: str) -> Path:
    """A shipped YAML file by bare name (``gss_spending`` -> ``<folder>/<parts>/gss_spending.yaml``), or else
    the path given: anything with a .yaml suffix, a ``/``, or that exists (a folder is then refused by its
    reader, not joined onto the assets folder)."""
    candidate = Path(name_or_path)
    if candidate.suffix.lower() in (".yaml", ".yml") or candidate.exists() or "/" in name_or_path:
        return candidate
    return path(folder, *parts, f"{name_or_path}.yaml")


@cache
def json_schema(name: str) -> dict:
    """A JSON Schema of schemas/ by name (``verdict``, ``preferences``, ...), parsed once: shared, so a caller
    that changes it works on a copy."""
    return json.loads(path("schemas", f"{name}.json").read_text())
