"""What a draft spec knows of each variable of a survey file (``polypref init-spec``), and reading it.

The file's metadata names every variable; its data are read, in chunks, only for the variables the draft may use:
the distinct answers (up to a short scale), the numbers' range and sum, the rows without an answer, and for an id
candidate whether any value repeats.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from polypref import files
from polypref.errors import ConfigError, first_line
from polypref.population.survey import LABELLED_SUFFIXES, read_survey_file

DRAFT_SUFFIXES = (*LABELLED_SUFFIXES, ".parquet", ".csv")
MAX_ANSWERS = 15  # more distinct answers than this is a count or a measurement, not an item's answer scale
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


def read_survey(path: Path) -> tuple[str, dict[str, Variable]]:
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
        v.name for v in variables.values() if v.labels or v.demographic or weight_rank(v) is not None or id_like(v)
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
            v.labels = {k: t for k, t in v.labels.items() if fits(k, v.dtype)}  # Stata's .a-.z label no value
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
        if id_like(v):
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
        numbers = series.dtype.is_numeric() and all(fits(x, pl.Float64) for x in (lo, hi))
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


def weight_rank(v: Variable) -> int | None:
    """How likely the variable is the survey weight, by name then label; None: not at all."""
    name = v.name.lower()
    if name in WEIGHT_NAMES:
        return WEIGHT_NAMES.index(name)
    if _WEIGHT_NAME.search(name):
        return len(WEIGHT_NAMES)
    if re.search(r"\bweight(s|ing)?\b", v.label, re.IGNORECASE):
        return len(WEIGHT_NAMES) + 1
    return None


def id_like(v: Variable) -> bool:
    return v.name.lower() in ID_NAMES or bool(_ID_NAME.search(v.name)) or bool(_ID_LABEL.search(v.label))


def fits(code: Any, dtype: pl.DataType) -> bool:
    if dtype.is_numeric():
        return isinstance(code, int | float) and not isinstance(code, bool) and math.isfinite(code)
    return isinstance(code, str)


def one_line(text: str) -> str:
    """Text fit for a comment or a title: no line breaks or other invisible characters (a comment ends at any
    line break YAML knows, \\x85 and \\u2028 included), at most 150 characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= 150 else flat[:147] + "..."
