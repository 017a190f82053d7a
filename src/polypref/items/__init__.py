"""Items (prompts with stance-annotated responses) and how they are paired."""

from polypref.items.pairing import make_pairs
from polypref.items.sources import load_items

__all__ = ["load_items", "make_pairs"]
