"""Items (prompts with responses, from any source and format) and how they are paired."""

from polypref.items.pairing import make_pairs
from polypref.items.sources import load_items, read_items

__all__ = ["load_items", "make_pairs", "read_items"]
