"""Survey column values -> the labels a spec gives them: coded (labels), binned (bins) or as text.

Every value of a used column must get a meaning the spec gives it, or the spec is refused: a code without a
label, or a label key that no value of the column's type can equal. Nothing here turns a user's mistake into a
null silently.

A labelled survey file (.sav, .dta) brings its own value labels and declared-missing codes (``FileColumn``): its
labels fill the codes the spec does not map (the spec's own win), its unlabelled codes read as their number, as
SPSS and Stata show them, and its missing codes are not answered unless the spec maps them as answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from polypref import files
from polypref.errors import ConfigError
from polypref.population.spec import Bin, Code, SurveySpec

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INT64 = 2**63


@dataclass(frozen=True)
class FileColumn:
    """What a labelled survey file declares about one of its variables, beyond the values."""

    file: str  # the survey file, for messages
    labels: Mapping[object, str]  # code -> value label, keyed as the file keys them
    missing: tuple[tuple[object, object], ...] = ()  # inclusive (lo, hi) ranges of user-missing codes


def column_labels(
    spec: SurveySpec,
    table: pl.DataFrame,
    field: str,
    column: str,
    labels: dict[Code, str] | None,
    labels_field: str,
    bins: list[Bin] | None,
    scale: list[str] | None = None,
    declared: FileColumn | None = None,
) -> pl.Expr:
    """Expression giving each respondent's label for a column; unknown codes are a spec error, not a null."""
    series = table[column]
    dtype = series.dtype
    col = pl.col(column)
    if isinstance(dtype, pl.Decimal):
        dtype, col = pl.Float64, col.cast(pl.Float64)
    if dtype.is_float():  # pandas codes a skipped answer as NaN: it is missing, not a value
        col = pl.when(col.is_not_nan()).then(col)
    own = _typed_labels(spec, labels_field, column, dtype, labels) if labels is not None else None
    if declared is not None and declared.missing:
        hit = _declared_missing(col, dtype, declared.missing, list(own or {}))
        if hit is not None:
            col = pl.when(hit).then(None).otherwise(col)
    values = [v for v in table.select(col.alias("_value"))["_value"].drop_nulls().unique().to_list() if not _is_nan(v)]
    if bins is not None:
        return _binned(spec, field, column, dtype, col, values, bins)
    text = _as_text(col, dtype, values)
    file = declared.file if declared is not None else spec.source
    file_labels = _file_labels(declared, dtype)
    if own is None and not file_labels:
        answer = text
    else:
        answer = _coded(spec, labels_field, column, dtype, col, values, own or {}, file_labels, text, file)
    if scale is not None:
        answers = table.select(answer.alias("answer"))["answer"].drop_nulls().unique().sort().to_list()
        stray = [a for a in answers if a not in scale]
        if stray:
            hint = f" (value labels: put them on the scale, or map their codes in {labels_field})"
            reason = f"column {column!r} of {file} has answers off the scale: {stray[:10]}{hint if file_labels else ''}"
            raise ConfigError(spec.path, [(field, reason)])
    return answer


def _as_text(col: pl.Expr, dtype: pl.DataType, values: list) -> pl.Expr:
    """An unlabelled value as text; ``values`` are all the column's values."""
    # booleans too: 1, 1.0 and true name the same answer, "1", as in the survey's 0/1 dummies
    integral = (dtype.is_numeric() or dtype == pl.Boolean) and values and all(map(_integral, values))
    return col.cast(pl.Int64).cast(pl.String) if integral else col.cast(pl.String)


def value_texts(values: list, dtype: pl.DataType) -> list[str]:
    """The answers unlabelled ``values`` (all of a column's values) read as, exactly as column_labels gives them:
    a drafted scale must hold the very same texts."""
    series = pl.Series("v", values, dtype=dtype)
    return pl.DataFrame([series]).select(_as_text(pl.col("v"), dtype, values))["v"].to_list()


def _declared_missing(
    col: pl.Expr, dtype: pl.DataType, ranges: tuple[tuple[object, object], ...], answers: list[object]
) -> pl.Expr | None:
    """Rows holding a code the file declares missing, except codes the spec maps: those are answers it wants."""
    textual = dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    hits = []
    for lo, hi in ranges:
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (lo, hi))
        if dtype.is_numeric() and numbers:
            hits.append(col.is_between(pl.lit(lo), pl.lit(hi)))
        elif textual and isinstance(lo, str) and isinstance(hi, str):
            hits.append(col.cast(pl.String).is_between(pl.lit(lo), pl.lit(hi)))
    if not hits:
        return None
    hit = pl.any_horizontal(hits)
    if answers:
        kept = pl.Series(answers, dtype=pl.String if textual else dtype)
        hit = hit & ~(col.cast(pl.String) if textual else col).is_in(kept.implode())
    return hit


def _binned(
    spec: SurveySpec, field: str, column: str, dtype: pl.DataType, col: pl.Expr, values: list, bins: list[Bin]
) -> pl.Expr:
    if not dtype.is_numeric():
        raise ConfigError(spec.path, [(f"{field}.bins", f"column {column!r} is not numeric")])
    top = bins[-1].upto
    over = [v for v in values if v > top]
    if over:
        raise ConfigError(spec.path, [(f"{field}.bins", f"values {sorted(over)[:5]} exceed the last bin ({top})")])
    expr = pl.lit(None, dtype=pl.String)
    for b in reversed(bins):
        expr = pl.when(col <= b.upto).then(pl.lit(b.label)).otherwise(expr)
    return pl.when(col.is_null()).then(None).otherwise(expr)


def _typed_labels(
    spec: SurveySpec, labels_field: str, column: str, dtype: pl.DataType, labels: dict[Code, str]
) -> dict[object, str]:
    """Labels keyed as the column's values are typed: YAML keys 1, "1", 1.0 and true meet the column halfway,
    and a key no value of the column's type can equal is refused rather than left to match nothing."""
    if dtype.is_temporal():
        raise ConfigError(spec.path, [(labels_field, f"column {column!r} holds {dtype}: give no labels, or codes")])
    mapping: dict[object, str] = {}
    written: dict[object, Code] = {}
    for key, label in labels.items():
        typed = _typed_key(key, dtype)
        if isinstance(typed, _Refused):
            raise ConfigError(spec.path, [(labels_field, f"key {key!r}: {typed.reason} (column {column!r})")])
        if typed in mapping:
            raise ConfigError(
                spec.path, [(labels_field, f"keys {written[typed]!r} and {key!r} name the same value of {column!r}")]
            )
        mapping[typed], written[typed] = label, key
    return mapping


def _file_labels(declared: FileColumn | None, dtype: pl.DataType) -> dict[object, str]:
    """The file's value labels keyed as the column's values; labels no value can have are left out (Stata labels
    its missing codes .a-.z, which arrive as nulls)."""
    if declared is None or dtype.is_temporal():
        return {}
    mapping: dict[object, str] = {}
    for key, label in declared.labels.items():
        typed = _typed_key(key, dtype)  # type: ignore[arg-type]
        if not isinstance(typed, _Refused):
            mapping.setdefault(typed, label)
    return mapping


def _coded(
    spec: SurveySpec,
    labels_field: str,
    column: str,
    dtype: pl.DataType,
    col: pl.Expr,
    values: list,
    own: dict[object, str],
    file_labels: dict[object, str],
    text: pl.Expr,
    file: str,
) -> pl.Expr:
    """The spec's labels over the file's: a value either has a label, or (in a variable the file labels) reads
    as its number, as SPSS and Stata show it; in any other column an unlabelled value is the spec's error."""
    mapping = dict(file_labels)
    blank = sorted((v for v in values if v in mapping and v not in own and files.is_blank(mapping[v])), key=str)
    if blank:
        reason = f"{file}: {column!r} codes {blank[:10]} have blank value labels; label them here"
        raise ConfigError(spec.path, [(labels_field, reason)])
    mapping.update(own)
    unknown = [v for v in values if v not in mapping]
    if unknown and not file_labels:
        raise ConfigError(
            spec.path,
            [
                (
                    labels_field,
                    f"column {column!r} of {file} has values without a label: {sorted(unknown, key=str)[:10]}",
                )
            ],
        )
    present = [v for v in values if v in mapping]
    if not present:
        return text if values else pl.lit(None, dtype=pl.String)
    textual = dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    source = col.cast(pl.String) if textual else col
    # replace the values that occur (typed as the column), so no key is ever cast into a type it does not fit
    old = pl.Series(present, dtype=pl.String if textual else dtype)
    return source.replace_strict(
        old, [mapping[v] for v in present], default=text if unknown else None, return_dtype=pl.String
    )


@dataclass(frozen=True)
class _Refused:
    reason: str


def _typed_key(key: Code, dtype: pl.DataType) -> object:
    """The column value a label key names, or why it can name none."""
    if dtype == pl.Null:
        return key
    if dtype == pl.Boolean:
        if isinstance(key, bool) or key in (0, 1):
            return bool(key)
        return _Refused("the column holds true/false; key the labels true and false")
    if dtype.is_numeric():
        number = key
        if isinstance(key, str):
            if _INT.fullmatch(key.strip()):
                number = int(key)
            elif _FLOAT.fullmatch(key.strip()):
                number = float(key)
            else:
                return _Refused("not a number, but the column holds numbers")
        if isinstance(number, bool):
            return int(number)  # true names code 1, as in the survey's 0/1 dummies
        if isinstance(number, float) and math.isnan(number):
            return _Refused("NaN is a missing answer, not a code; see `missing`")
        if dtype.is_integer():
            if not _integral(number):
                return _Refused("not a whole number (64-bit), but the column holds whole numbers")
            return int(number)
        return number
    if isinstance(key, bool):
        return _Refused("YAML reads true/false/yes/no/on/off as booleans, but the column holds text; quote the key")
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _integral(value: object) -> bool:
    """A whole number that fits a 64-bit integer, as cast to Int64 needs."""
    if isinstance(value, bool | int):
        return -_INT64 <= int(value) < _INT64
    return isinstance(value, float) and value.is_integer() and -_INT64 <= value < _INT64
