"""A source's layout: its format and which of its columns holds each field (told by ``formats.detect``)."""

from __future__ import annotations

from collections.abc import Mapping


class Layout:
    """A source's format, which of its columns holds each field, and (completions) the key inside each completion
    that ``items.columns.rating`` names."""

    def __init__(self, name: str, columns: Mapping[str, str], rating: str | None = None):
        self.name = name
        self.columns = dict(columns)  # field -> source column
        self.rating = rating

    @property
    def flat(self) -> bool:
        return self.name == "polypref" and "responses" not in self.columns
