"""Hypothesis strategies for user input files: texts that break naive readers, and damage to valid records."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.conftest import SCALE, items_records

# Texts a reader must keep exactly, or refuse: Unicode line breaks (str.splitlines splits at all of them), JSON
# and CSV delimiters, whitespace-only and empty strings, NULs, the group separator, a lone surrogate.
TRICKY = [
    "",
    " ",
    "\t\n",
    "\u3000",
    "\u2028",
    "a\u2028b",
    "a\u2029b",
    "x\x85y",
    "x\x0by\x0cz",
    "\x1c\x1d\x1e",
    "line\r\nend\r",
    "\x00",
    '{"id": "x"}',
    "a · b",
    "\ufeffbom",
    "\ud800",
    "é" * 3,
]
texts = st.one_of(st.sampled_from(TRICKY), st.text(max_size=20), st.text(st.characters(codec="utf-8"), max_size=8))
# Values of the wrong shape for any field
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into nested dicts and lists, so a mutation can reach any field."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any], max_mutations: int = 3) -> Any:
    """``base`` with a few fields replaced, deleted or added: the ways a hand-edited file goes wrong."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, max_mutations))):
        where = paths(value)
        if not where:
            break
        path = draw(st.sampled_from(where))
        *parents, last = path
        parent = value
        for key in parents:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "copy"]))
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=6), st.sampled_from(["id", "extra"])))] = draw(values)
        elif action == "copy" and isinstance(parent, list) and parent:
            parent.append(copy.deepcopy(draw(st.sampled_from(parent))))  # duplicates: ids, labels, responses
        elif action == "copy" and isinstance(parent, dict):
            other = draw(st.sampled_from(list(parent)))
            parent[last] = copy.deepcopy(parent[other])
    return value


# Items files: the conftest items in a few arrangements, damaged with mostly plausible values so that many still
# load and their texts can be compared with what was written.
BASES = [items_records()[:1], items_records()[1:], items_records(), items_records()[::-1]]
item_values = st.one_of(texts, texts, st.sampled_from([*SCALE, "t1", "t2", None]), junk)
item_records = st.sampled_from(BASES).flatmap(lambda base: mutated(base, item_values))
