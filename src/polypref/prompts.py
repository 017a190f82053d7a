"""The jinja2 environments over the template folders: strict, so a typo in a template fails loudly."""

from __future__ import annotations

import hashlib
from functools import cache

import jinja2

from polypref import assets

MARKER_OPEN, MARKER_CLOSE = "<<<", ">>>"


def delimit(text: str) -> str:
    """Make untrusted text unable to forge or close a ``<<<MARKER>>>``: its angle runs become look-alikes."""
    return text.replace(MARKER_OPEN, "‹‹‹").replace(MARKER_CLOSE, "›››")


@cache
def environment(folder: str = "prompts") -> jinja2.Environment:
    """The strict environment over an asset folder: prompts/ for model text, schemas/ for the dataset card."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(assets.path(folder))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # prompts are plain text read by models, not HTML
    )
    env.filters["delimit"] = delimit
    return env


def template(name: str) -> jinja2.Template:
    return environment().get_template(name)


def template_hash(name: str) -> str:
    """Content hash of a template's source, recorded in provenance so a prompt change is visible."""
    source, _, _ = environment().loader.get_source(environment(), name)  # type: ignore[union-attr]
    return hashlib.sha256(source.encode()).hexdigest()[:16]
