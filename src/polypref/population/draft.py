"""Draft a population spec from a survey file (``polypref init-spec``).

A labelled survey file already says most of what a spec needs: variable labels name the questions, value labels
the answers, declared missing codes the non-answers, and conventional names the weight and the respondent id.
The draft writes all of it out for a person to read and prune. Its choices are guesses, so each is marked as one;
but it loads and samples as written (answers not given are marked, never dropped, so no respondent is lost before
the user decides), which makes the first edit a choice rather than a repair.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from polypref import files
from polypref.errors import ConfigError, first_line
from polypref.population.labels import value_texts
from polypref.population.spec import GROUP_SEPARATOR, NOT_ANSWERED
from polypref.population.survey import LABELLED_SUFFIXES, read_survey_file

__all__ = ["DRAFT_SUFFIXES", "Draft", "draft_spec"]

DRAFT_SUFFIXES = (*LABELLED_SUFFIXES, ".parquet", ".csv")
MAX_ANSWERS = 15  # more distinct answers than this is a count or a measurement, not an item's answer scale
MAX_GROUPS = 36  # suggested groups: enough to stratify on, few enough that each still holds respondents
CHUNK_ROWS = 50_000  # rows read at a time: files with thousands of variables stay within memory

# Names surveys give their weights and ids (GSS, ESS, ANES, Pew and common practice), best first.
WEIGHT_NAMES = ("anweight", "wtssall", "wtssps", "wtsscomp", "pspwght", "weight", "wt", "wgt", "pweight", "dweight")
_WEIGHT_NAME = re.compile(r"(^|_)(wt|wgt|wght|weight|weights)(_|\d|$)|^(wt|wgt)", re.IGNORECASE)
ID_NAMES = ("id", "idno", "respid", "resp_id", "respondent_id", "respondentid", "caseid", "case_id", "responseid")
_ID_NAME = re.compile(r"(^|_)(id|idno|respid|caseid)$", re.IGNORECASE)
_ID_LABEL = re.compile(r"\b(identification|identifier|respondent (id|number)|case (id|number))\b", re.IGNORECASE)

# Demographic-looking variables, by name (GSS, ESS, common short names) or by label.
_KEYWORDS = (
    r"(age|sex|gender|race|ethnicity|ethnic group|education|degree|income|region|marital status|religion|"
    r"religious preference|party|party identification|ideology|employment|occupation|citizenship|born)"
)
_DEMOGRAPHIC_NAME = re.compile(
    r"(age|agea|age_?r|age_?g(roup|rp)?|age_?cat|sex|gndr|gender|race|racecen\d|ethnic|ethnicity|educ|education|"
    r"degree|eduyrs|edulvl\w*|income|realinc|hinctnta|region|cntry|country|state|marital|marst|relig\w*|party|"
    r"partyid|prtvote?\w*|polviews|ideology|wrkstat|empl\w*|occ\w*|urban|domicil|born|brncntr|citizen\w*|hhsize)",
    re.IGNORECASE,
)
_DEMOGRAPHIC_LABEL = re.compile(
    rf"^\W*((r'?s|respondent'?s?|your|highest|summary:?)\s+)*{_KEYWORDS}\b"
    rf"|\b(respondent|r'?s|\(r\))\b.*\b{_KEYWORDS}\b|\b{_KEYWORDS}\b.*\b(of\s+)?(respondent|\(r\))",
    re.IGNORECASE,
)
_AGE_NAME = re.compile(r"age|agea|age_?r", re.IGNORECASE)
_AGE_LABEL = re.compile(r"^\W*((r'?s|respondent'?s?|your)\s+)?age\b|\bage of (the )?respondent\b", re.IGNORECASE)
# groups are suggested from these first: the strata surveys report by
_GROUP_ORDER = (r"sex|gender|gndr", r"(^|_)age", r"party|polviews|ideolog", r"educ|degree", r"region", r"race|ethnic")
_AGE_EDGES = (29, 44, 64)


@dataclass
class Variable:
    """One variable of the survey file, as much as the draft needs to know of it."""

    name: str
    label: str = ""  # the variable label ("" without one)
    measure: str = "unknown"  # SPSS measurement level: nominal, ordinal, scale or unknown
    labels: dict[Any, str] = field(default_factory=dict)  # value labels of answer codes (declared missing left out)
    missing: list[tuple[Any, Any]] = field(default_factory=list)  # declared-missing code ranges
    dtype: pl.DataType | None = None  # None: its data were not read
    values: set[Any] = field(default_factory=set)  # distinct answers seen, up to MAX_ANSWERS + 1
    many: bool = False  # more distinct answers than MAX_ANSWERS
    nulls: int = 0  # rows without an answer (declared missing included)
    rows: int = 0
    low: float = math.inf  # smallest and largest number seen
    high: float = -math.inf
    total: float = 0.0  # sum of the numbers seen (a weight's)
    seen: set[Any] | None = None  # every value, for id candidates only
    repeated: bool = False

    @property
    def numeric(self) -> bool:
        return self.dtype is not None and self.dtype.is_numeric()

    @property
    def demographic(self) -> bool:
        return bool(_DEMOGRAPHIC_NAME.fullmatch(self.name) or _DEMOGRAPHIC_LABEL.search(self.label))

    @property
    def age(self) -> bool:
        return bool(_AGE_NAME.fullmatch(self.name) or _AGE_LABEL.search(self.label))


@dataclass(frozen=True)
class Draft:
    spec: dict[str, Any]  # what the YAML says, for checks
    text: str  # the YAML, with comments


def draft_spec(survey: Path, spec_path: Path) -> Draft:
    """A spec over ``survey``, to be written at ``spec_path`` (its ``source:`` is relative to it). Raises
    ConfigError naming the survey file when it cannot be read or offers nothing to draft from."""
    file_label, variables = _read(survey)
    rows = max((v.rows for v in variables.values()), default=0)
    if rows == 0:
        raise ConfigError(str(survey), [("", "the file has no respondents to draft a spec from")])
    weight, weight_note = _guess_weight(variables)
    id_column = _guess_id(variables, rows)
    reserved = {weight, id_column}
    candidates = [v for v in variables.values() if v.name not in reserved and v.dtype is not None]
    attributes, notes = _attributes(candidates)
    items = _items([v for v in candidates if v.name not in {a["column"] for a in attributes.values()}])
    if not items:  # a file without labelled items: take what looks most like one
        items = _items([v for v in candidates if not v.labels and not v.demographic], unlabelled=True)
    if not items:
        raise ConfigError(
            str(survey), [("", f"no variable has 2 to {MAX_ANSWERS} answers to draft an attitude item from")]
        )
    if not attributes:  # groups need an attribute: the item with the fewest answers doubles as one
        v = min((variables[i["column"]] for i in items.values()), key=lambda v: len(_answers(v)))
        key = _key(v.name, attributes)
        attributes[key], notes[key] = _attribute(v), "no demographic variable found: an attitude item doubles as one"
    by = _groups(attributes, variables)
    stem = re.sub(r"[^a-z0-9]+", "_", survey.stem.lower()).strip("_") or "survey"
    try:
        source = Path(os.path.relpath(survey.resolve(), spec_path.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        source = survey.resolve().as_posix()
    spec = {
        "name": stem,
        "title": _one_line(file_label) or f"{survey.name} (edit: the survey's title)",
        "source": source,
        "id_column": id_column,
        "weight_column": weight,
        "terms_class": "no_redistribution",
        "citation": f"TODO: cite the survey this file ({survey.name}) comes from.",
        "terms": f"TODO: the terms of use of {survey.name}: who may use it, and whether derived data may be shared.",
        "portrayal": "portrayal.j2",
        "attributes": attributes,
        "groups": {"by": by},
        "attitudes": _attitudes(items),
    }
    text = _render(survey, spec, variables, rows, weight_note, notes)
    return Draft(spec=spec, text=text)


# ---- reading ----


def _read(path: Path) -> tuple[str, dict[str, Variable]]:
    """The file's label and its variables: metadata for all, data for those the draft may use."""
    suffix = path.suffix.lower()
    if suffix not in DRAFT_SUFFIXES:
        raise ConfigError(str(path), [("", f"expected a survey file ending in {', '.join(DRAFT_SUFFIXES)}")])
    files.check_file(path, str(path), "", "survey file not found")
    if suffix in LABELLED_SUFFIXES:
        return _read_labelled(path)
    try:
        if suffix == ".csv":
            text = files.read_text(path)
            frame = pl.read_csv(io.BytesIO(text.encode()), infer_schema_length=None)
        else:
            frame = pl.read_parquet(path)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(str(path), [("", f"cannot read survey table: {first_line(e)}")]) from None
    variables = {name: Variable(name=name, dtype=frame[name].dtype) for name in frame.columns}
    _profile(variables, frame)
    return "", variables


def _read_labelled(path: Path) -> tuple[str, dict[str, Variable]]:
    _, meta = read_survey_file(path, str(path), "", metadataonly=True)
    measures = meta.variable_measure or {}
    value_labels = meta.variable_value_labels or {}
    ranges = meta.missing_ranges or {}
    variables: dict[str, Variable] = {}
    for name in meta.column_names:
        missing = [(r["lo"], r["hi"]) for r in ranges.get(name, [])]
        labels = {k: v for k, v in value_labels.get(name, {}).items() if not _declared(k, missing)}
        label = (meta.column_names_to_labels or {}).get(name) or ""
        variables[name] = Variable(name, label, measures.get(name) or "unknown", labels, missing)
    wanted = [
        v.name for v in variables.values() if v.labels or v.demographic or _weight_rank(v) is not None or _id_like(v)
    ]
    if not any(v.labels and not v.demographic for v in variables.values()):
        wanted = list(variables)  # no labelled items: any variable may have to serve as one
    total = meta.number_rows if meta.number_rows and meta.number_rows > 0 else None
    offsets = range(0, total, CHUNK_ROWS) if total and total > CHUNK_ROWS else [0]
    for offset in offsets:
        limit = CHUNK_ROWS if len(offsets) > 1 else 0
        frame, _ = read_survey_file(path, str(path), "", usecols=wanted, row_offset=offset, row_limit=limit)
        for name in frame.columns:
            v = variables[name]
            v.dtype = frame[name].dtype
            v.labels = {k: t for k, t in v.labels.items() if _fits(k, v.dtype)}  # Stata's .a-.z label no value
        _profile(variables, frame)
    return meta.file_label or "", variables


def _profile(variables: dict[str, Variable], frame: pl.DataFrame) -> None:
    """Fold a chunk of rows into what is known of each variable."""
    for name in frame.columns:
        v = variables[name]
        series = frame[name]
        if series.dtype.is_float():
            series = series.fill_nan(None)
        if v.missing:
            series = series.filter(~_missing_mask(series, v.missing))
            v.nulls += frame.height - series.len()
        v.rows += frame.height
        v.nulls += series.null_count()
        present = series.drop_nulls()
        if _id_like(v):
            v.seen = v.seen if v.seen is not None else set()
            values = present.to_list()
            v.repeated = v.repeated or len(set(values)) < len(values) or not v.seen.isdisjoint(values)
            v.seen.update(values)
        if not v.many:
            v.values.update(present.unique().to_list())
            if len(v.values) > MAX_ANSWERS:
                v.many, v.values = True, set()
        if present.dtype.is_numeric() and present.len():
            v.low = min(v.low, float(present.min()))  # type: ignore[arg-type]
            v.high = max(v.high, float(present.max()))  # type: ignore[arg-type]
            v.total += float(present.cast(pl.Float64).sum())


def _missing_mask(series: pl.Series, ranges: list[tuple[Any, Any]]) -> pl.Series:
    """Rows holding a declared-missing code (numbers with numbers, text with text); nulls count as not."""
    mask = pl.Series([False] * series.len())
    for lo, hi in ranges:
        numbers = series.dtype.is_numeric() and all(_fits(x, pl.Float64) for x in (lo, hi))
        if numbers or (series.dtype == pl.String and isinstance(lo, str) and isinstance(hi, str)):
            mask |= ((series >= lo) & (series <= hi)).fill_null(False)
    return mask


def _declared(value: Any, ranges: list[tuple[Any, Any]]) -> bool:
    """Whether a code falls in one of the file's declared-missing ranges (numbers with numbers, text with text)."""
    for lo, hi in ranges:
        try:
            if value is not None and type(value) is not bool and lo <= value <= hi:
                return True
        except TypeError:
            continue
    return False


# ---- guesses ----


def _weight_rank(v: Variable) -> int | None:
    """How likely the variable is the survey weight, by name then label; None: not at all."""
    name = v.name.lower()
    if name in WEIGHT_NAMES:
        return WEIGHT_NAMES.index(name)
    if _WEIGHT_NAME.search(name):
        return len(WEIGHT_NAMES)
    if re.search(r"\bweight(s|ing)?\b", v.label, re.IGNORECASE):
        return len(WEIGHT_NAMES) + 1
    return None


def _guess_weight(variables: dict[str, Variable]) -> tuple[str | None, str]:
    ranked = sorted((rank, i, v) for i, v in enumerate(variables.values()) if (rank := _weight_rank(v)) is not None)
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
    note = f"guessed from its name or label ({_one_line(chosen.label) or chosen.name})"
    return chosen.name, note + (f"; other candidates: {', '.join(others)}" if others else "")


def _id_like(v: Variable) -> bool:
    return v.name.lower() in ID_NAMES or bool(_ID_NAME.search(v.name)) or bool(_ID_LABEL.search(v.label))


def _guess_id(variables: dict[str, Variable], rows: int) -> str | None:
    """A respondent id: a named one that is present and unique on every row (persona ids hash it)."""

    def rank(v: Variable) -> int:
        name = v.name.lower()
        return ID_NAMES.index(name) if name in ID_NAMES else len(ID_NAMES)

    for v in sorted((v for v in variables.values() if _id_like(v)), key=rank):
        whole = v.numeric and v.seen is not None and all(float(x).is_integer() for x in v.seen)
        text = v.dtype == pl.String and v.seen is not None and not any(files.is_blank(x) for x in v.seen)
        if (whole or text) and v.nulls == 0 and not v.repeated and v.rows == rows:
            return v.name
    return None


def _answers(v: Variable) -> list[tuple[Any, str]]:
    """(code, answer) in code order, for every labelled code and every value seen, as the loader labels them: an
    unlabelled value reads as its number, written as for all the values seen (1, or 1.0 beside a 2.5)."""
    if v.dtype is None or v.dtype.is_temporal():
        return []
    seen = sorted(v.values, key=_order)
    texts = dict(zip(seen, value_texts(seen, v.dtype), strict=True)) if seen else {}
    answers = []
    for code in sorted({c for c in v.labels if _fits(c, v.dtype)} | v.values, key=_order):
        label = v.labels.get(code)
        if label is not None and not files.is_blank(label):
            answers.append((code, label))
        else:  # a blank label is written out as the code's text, which wins over the file's
            answers.append((code, texts[code] if code in texts else value_texts([code], v.dtype)[0]))
    return answers


def _fits(code: Any, dtype: pl.DataType) -> bool:
    if dtype.is_numeric():
        return isinstance(code, int | float) and not isinstance(code, bool) and math.isfinite(code)
    return isinstance(code, str)


def _order(code: Any) -> tuple[int, Any]:
    return (0, code) if isinstance(code, int | float) else (1, str(code))


def _yaml_code(code: Any) -> Any:
    """A code as the YAML key a person would write: 1, not 1.0."""
    if isinstance(code, float) and code.is_integer() and abs(code) < 2**53:
        return int(code)
    return code


def _key(name: str, taken: dict[str, Any]) -> str:
    key, n = name, 2
    while key in taken:
        key, n = f"{name}_{n}", n + 1
    return key


def _attribute(v: Variable) -> dict[str, Any]:
    spec: dict[str, Any] = {"column": v.name}
    if v.labels:
        spec["labels"] = {_yaml_code(c): _groupable(a, c) for c, a in _answers(v) if c in v.labels}
    spec["missing"] = "mark"
    return spec


def _groupable(label: str, code: Any) -> str:
    """An attribute's label that can name a group: the group separator would merge two groups, and a label
    "not answered" would share its name with respondents who gave no answer."""
    label = label.replace(GROUP_SEPARATOR, " / ")
    return f"{label} ({_yaml_code(code)})" if label == NOT_ANSWERED else label


def _attributes(variables: list[Variable]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Attributes for demographic-looking variables that are labelled (or an age in years, with an age group)."""
    attributes: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    for v in variables:
        if not v.demographic or v.dtype is None or v.dtype.is_temporal():
            continue
        if v.age and v.numeric and (v.many or not v.labels) and v.low >= 0 and v.high <= 130:
            attributes[_key(v.name, attributes)] = {"column": v.name, "missing": "mark"}
            bins = _age_bins(v)
            if bins:
                attributes[_key(f"{v.name}_group", attributes)] = {"column": v.name, "bins": bins, "missing": "mark"}
                notes[f"{v.name}_group"] = "age groups: set the bounds you want"
        elif v.labels or (not v.many and v.values):
            attributes[_key(v.name, attributes)] = _attribute(v)
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


def _items(variables: list[Variable], unlabelled: bool = False) -> dict[str, dict[str, Any]]:
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
        answers = _answers(v)
        scale = list(dict.fromkeys(a for _, a in answers))
        if not 2 <= len(scale) <= MAX_ANSWERS or any(files.is_blank(a) for a in scale):
            continue
        found.append((v, answers, scale))
    ordinal = [f for f in found if f[0].measure != "nominal"] or found
    items: dict[str, dict[str, Any]] = {}
    for v, answers, scale in ordinal:
        item: dict[str, Any] = {"column": v.name, "topic": _one_line(v.label) or v.name}
        if v.labels:
            item["codes"] = {_yaml_code(c): a for c, a in answers if c in v.labels}
        item["scale"] = scale
        items[_key(v.name, items)] = item
    return items


def _attitudes(items: dict[str, dict[str, Any]]) -> dict[str, Any]:
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


def _groups(attributes: dict[str, dict[str, Any]], variables: dict[str, Variable]) -> list[str]:
    """A few attributes with few categories, in the order surveys usually stratify by."""
    sizes: dict[str, int] = {}
    for name, a in attributes.items():
        v = variables[a["column"]]
        if v.many and "bins" not in a:
            continue  # too many answers to tell
        texts = {b["label"] for b in a.get("bins", [])}
        texts = texts or {_groupable(t, c) if "labels" in a else t for c, t in _answers(v)}
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


# ---- writing ----


class _Dumper(yaml.SafeDumper):
    """Text with line breaks or invisible characters goes in double quotes, where every one is escaped: PyYAML
    would write some (\x85, \u2028) raw in plain or single-quoted text, and reading folds them into spaces."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = '"' if not text.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def _dump(value: Any, indent: int = 0) -> str:
    """YAML for one entry; indenting a whole block keeps it valid, as YAML nests by relative indentation."""
    # lists and mappings of plain values in flow style ([a, b]), except the entry itself: key: value, not {key: value}
    flat = isinstance(value, dict) and not any(isinstance(x, dict | list) for x in value.values())
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        allow_unicode=True,
        sort_keys=False,
        width=1_000_000,
        default_flow_style=False if flat else None,
    )
    return "".join(" " * indent + line if line.strip() else line for line in text.splitlines(keepends=True))


def _comment(text: str, indent: int = 0) -> str:
    return " " * indent + "# " + _one_line(text) + "\n"


def _one_line(text: str) -> str:
    """Text fit for a comment or a title: no line breaks or other invisible characters (a comment ends at any
    line break YAML knows, \\x85 and \\u2028 included), at most 150 characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= 150 else flat[:147] + "..."


def _render(
    survey: Path,
    spec: dict[str, Any],
    variables: dict[str, Variable],
    rows: int,
    weight_note: str,
    notes: dict[str, str],
) -> str:
    out = [
        _comment(f"Population spec drafted by `polypref init-spec` from {survey.name}: {rows} respondents, "),
        _comment(f"{len(variables)} variables. Every choice below is a guess from names and labels: read it through."),
        "# Keep the attributes and attitude items you want (portrayals show them all), fix the topics (judges read\n",
        "# them), and set title, terms_class, citation and terms from the survey's documentation.\n",
    ]
    for key in ("name", "title", "source"):
        out.append(_dump({key: spec[key]}))
    id_note = "guessed: unique on every row" if spec["id_column"] else "none found: respondents are numbered by row"
    out.append(_dump({"id_column": spec["id_column"]}).rstrip("\n") + f"  # {_one_line(id_note)}\n")
    out.append(_dump({"weight_column": spec["weight_column"]}).rstrip("\n") + f"  # {_one_line(weight_note)}\n")
    out.append(_comment("open | non_commercial | no_redistribution; the last two need population.accept_terms"))
    for key in ("terms_class", "citation", "terms", "portrayal"):
        out.append(_dump({key: spec[key]}))

    out.append(
        "\n"
        + _comment("Who respondents are; missing: mark keeps respondents without an answer (drop: leaves them out).")
    )
    out.append("attributes:\n")
    for name, attribute in spec["attributes"].items():
        v = variables[attribute["column"]]
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}" + (f" ({notes[name]})" if name in notes else ""), 2))
        out.append(_dump({name: attribute}, 2))

    out.append("\n" + _comment("Social groups to sample across: the combinations of these attributes' answers."))
    out.append(_dump({"groups": spec["groups"]}))

    attitudes = spec["attitudes"]
    out.append(
        "\n" + _comment("Survey answers the personas hold. Scales run in code order: check that it is the order")
    )
    out.append(_comment("of agreement (positions 0..1 follow it). Codes not listed read as the file's value labels."))
    out.append("attitudes:\n")
    for key in ("scale", "codes", "missing"):
        if key in attitudes:
            out.append(_dump({key: attitudes[key]}, 2))
    out.append("  items:\n")
    for topic, item in attitudes["items"].items():
        v = variables[item["column"]]
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}", 4))
        out.append(_dump({topic: item}, 4))

    out.append("\n" + _comment(f"Every variable in {survey.name} (name: label):"))
    used = {a["column"]: "attribute" for a in spec["attributes"].values()}
    used |= {i["column"]: "attitude" for i in attitudes["items"].values()}
    used |= {spec["weight_column"]: "weight", spec["id_column"]: "id"}
    for v in variables.values():
        role = f" [{used[v.name]}]" if v.name in used else ""
        out.append(_comment(f"{v.name}: {v.label or '(no label)'}{role}", 2).replace("  # ", "#   ", 1))
    return "".join(out)
