"""A draft spec's guesses (``polypref init-spec``): the weight and the id, attributes, attitude items and their
shared scale, and the groups, from names, labels and the answers seen."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import polars as pl

from polypref import files
from polypref.population.draft_variables import (
    ID_NAMES,
    MAX_ANSWERS,
    Variable,
    fits,
    id_like,
    one_line,
    weight_rank,
)
from polypref.population.labels import value_texts
from polypref.population.spec import GROUP_SEPARATOR, NOT_ANSWERED

MAX_GROUPS = 36  # suggested groups: enough to stratify on, few enough that each still holds respondents
# groups are suggested from these first: the strata surveys report by
_GROUP_ORDER = (r"sex|gender|gndr", r"(^|_)age", r"party|polviews|ideolog", r"educ|degree", r"region", r"race|ethnic")
_AGE_EDGES = (29, 44, 64)


def guess_weight(variables: dict[str, Variable]) -> tuple[str | None, str]:
    ranked = sorted((rank, i, v) for i, v in enumerate(variables.values()) if (rank := weight_rank(v)) is not None)
    usable = [
        v
        for _, _, v in ranked
        if v.numeric and v.nulls == 0 and v.low >= 0 and math.isfinite(v.high) and 0 < v.total < math.inf
    ]
    others = [v.name for _, _, v in ranked if usable and v is not usable[0]]
    if not usable:
        names = [v.name for _, _, v in ranked]
        why = f"candidates {names} have missing, negative or no numbers" if names else "no variable looks like one"
        return None, f"no survey weight found ({why}): every respondent counts the same"
    chosen = usable[0]
    note = f"guessed from its name or label ({one_line(chosen.label) or chosen.name})"
    return chosen.name, note + (f"; other candidates: {', '.join(others)}" if others else "")


def guess_id(variables: dict[str, Variable], rows: int) -> str | None:
    """A respondent id: a named one that is present and unique on every row (persona ids hash it)."""

    def rank(v: Variable) -> int:
        name = v.name.lower()
        return ID_NAMES.index(name) if name in ID_NAMES else len(ID_NAMES)

    for v in sorted((v for v in variables.values() if id_like(v)), key=rank):
        whole = v.numeric and v.seen is not None and all(float(x).is_integer() for x in v.seen)
        text = v.dtype == pl.String and v.seen is not None and not any(files.is_blank(x) for x in v.seen)
        if (whole or text) and v.nulls == 0 and not v.repeated and v.rows == rows:
            return v.name
    return None


def answers_of(v: Variable) -> list[tuple[Any, str]]:
    """(code, answer) in code order, for every labelled code and every value seen, as the loader labels them: an
    unlabelled value reads as its number, written as for all the values seen (1, or 1.0 beside a 2.5)."""
    if v.dtype is None or v.dtype.is_temporal():
        return []
    seen = sorted(v.values, key=_order)
    texts = dict(zip(seen, value_texts(seen, v.dtype), strict=True)) if seen else {}
    answers = []
    for code in sorted({c for c in v.labels if fits(c, v.dtype)} | v.values, key=_order):
        label = v.labels.get(code)
        if label is not None and not files.is_blank(label):
            answers.append((code, label))
        else:  # a blank label is written out as the code's text, which wins over the file's
            answers.append((code, texts[code] if code in texts else value_texts([code], v.dtype)[0]))
    return answers


def _order(code: Any) -> tuple[int, Any]:
    return (0, code) if isinstance(code, int | float) else (1, str(code))


def _yaml_code(code: Any) -> Any:
    """A code as the YAML key a person would write: 1, not 1.0."""
    if isinstance(code, float) and code.is_integer() and abs(code) < 2**53:
        return int(code)
    return code


def free_key(name: str, taken: dict[str, Any]) -> str:
    key, n = name, 2
    while key in taken:
        key, n = f"{name}_{n}", n + 1
    return key


def attribute_of(v: Variable) -> dict[str, Any]:
    spec: dict[str, Any] = {"column": v.name}
    if v.labels:
        spec["labels"] = {_yaml_code(c): _groupable(a, c) for c, a in answers_of(v) if c in v.labels}
    spec["missing"] = "mark"
    return spec


def _groupable(label: str, code: Any) -> str:
    """An attribute's label that can name a group: the group separator would merge two groups, and a label
    "not answered" would share its name with respondents who gave no answer."""
    label = label.replace(GROUP_SEPARATOR, " / ")
    return f"{label} ({_yaml_code(code)})" if label == NOT_ANSWERED else label


def guess_attributes(variables: list[Variable]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Attributes for demographic-looking variables that are labelled (or an age in years, with an age group)."""
    attributes: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    for v in variables:
        if not v.demographic or v.dtype is None or v.dtype.is_temporal():
            continue
        if v.age and v.numeric and (v.many or not v.labels) and v.low >= 0 and v.high <= 130:
            attributes[free_key(v.name, attributes)] = {"column": v.name, "missing": "mark"}
            bins = _age_bins(v)
            if bins:
                attributes[free_key(f"{v.name}_group", attributes)] = {
                    "column": v.name,
                    "bins": bins,
                    "missing": "mark",
                }
                notes[f"{v.name}_group"] = "age groups: set the bounds you want"
        elif v.labels or (not v.many and v.values):
            attributes[free_key(v.name, attributes)] = attribute_of(v)
    return attributes, notes


def _age_bins(v: Variable) -> list[dict[str, Any]]:
    low, high = math.floor(v.low), v.high
    edges = [e for e in _AGE_EDGES if low <= e < high]
    if not edges:
        return []
    bins, start = [], low
    for edge in edges:
        bins.append({"upto": edge, "label": f"{start}-{edge}"})
        start = edge + 1
    top = int(high) if float(high).is_integer() else high
    bins.append({"upto": top, "label": f"{start}+"})
    return bins


def guess_items(variables: list[Variable], unlabelled: bool = False) -> dict[str, dict[str, Any]]:
    """Attitude items: labelled variables with a short answer scale (for a file without labels: any such
    variable), measured ordinal or not said to be nominal."""
    found = []
    for v in variables:
        if v.dtype is None or v.dtype.is_temporal() or v.many or not (v.labels or unlabelled):
            continue
        if v.nulls >= v.rows:  # nobody answered it (declared missing codes alone): a spec refuses such an item
            continue
        if not (v.numeric or v.dtype == pl.String):
            continue
        answers = answers_of(v)
        scale = list(dict.fromkeys(a for _, a in answers))
        if not 2 <= len(scale) <= MAX_ANSWERS or any(files.is_blank(a) for a in scale):
            continue
        found.append((v, answers, scale))
    ordinal = [f for f in found if f[0].measure != "nominal"] or found
    items: dict[str, dict[str, Any]] = {}
    for v, answers, scale in ordinal:
        item: dict[str, Any] = {"column": v.name, "topic": one_line(v.label) or v.name}
        if v.labels:
            item["codes"] = {_yaml_code(c): a for c, a in answers if c in v.labels}
        item["scale"] = scale
        items[free_key(v.name, items)] = item
    return items


def shared_attitudes(items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The most common scale (and codes) become the shared ones; items that differ keep their own."""
    common = Counter((tuple(i["scale"]), _frozen(i.get("codes"))) for i in items.values()).most_common(1)[0][0]
    scale, codes = list(common[0]), dict(common[1]) if common[1] is not None else None
    shared: dict[str, Any] = {"scale": scale}
    if codes is not None:
        shared["codes"] = codes
    shared["missing"] = "mark"
    out: dict[str, Any] = {}
    for key, item in items.items():
        own = dict(item)
        if own["scale"] == scale:
            del own["scale"]
        if codes is not None and own.get("codes") is None:
            own["codes"] = {}  # an item without labels must not take the shared ones
        elif own.get("codes") == codes:
            own.pop("codes", None)
        out[key] = own
    return {**shared, "items": out}


def _frozen(codes: dict[Any, str] | None) -> tuple[tuple[Any, str], ...] | None:
    return None if codes is None else tuple(codes.items())


def guess_groups(attributes: dict[str, dict[str, Any]], variables: dict[str, Variable]) -> list[str]:
    """A few attributes with few categories, in the order surveys usually stratify by."""
    sizes: dict[str, int] = {}
    for name, a in attributes.items():
        v = variables[a["column"]]
        if v.many and "bins" not in a:
            continue  # too many answers to tell
        texts = {b["label"] for b in a.get("bins", [])}
        texts = texts or {_groupable(t, c) if "labels" in a else t for c, t in answers_of(v)}
        if not texts or any(GROUP_SEPARATOR in t or t == NOT_ANSWERED for t in texts):
            continue  # would merge two groups, or name one like respondents without an answer
        sizes[name] = len(texts) + (1 if v.nulls else 0)  # and "not answered"
    if not sizes:
        return [next(iter(attributes))]
    few = {name: n for name, n in sizes.items() if n <= 7}
    if not few:
        return [min(sizes, key=sizes.__getitem__)]

    def rank(name: str) -> int:
        column = f"{name} {attributes[name]['column']}"
        hits = [i for i, p in enumerate(_GROUP_ORDER) if re.search(p, column, re.IGNORECASE)]
        binned = 0 if "bins" in attributes[name] else 1  # an age group before the age
        return (hits[0] if hits else len(_GROUP_ORDER)) * 2 + binned

    chosen: list[str] = []
    product = 1
    for name in sorted(few, key=rank):
        if len(chosen) < 3 and product * few[name] <= MAX_GROUPS:
            chosen.append(name)
            product *= few[name]
    return chosen or [min(few, key=few.__getitem__)]
