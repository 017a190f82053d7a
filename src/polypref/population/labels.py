"""Survey column values -> the labels a spec gives them: coded (labels), binned (bins) or as text.

Every value of a used column must get a meaning the spec gives it, or the spec is refused: a code without a
label, or a label key that no value of the column's type can equal. Nothing here turns a user's mistake into a
null silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import polars as pl

from polypref.errors import ConfigError
from polypref.population.spec import Bin, Code, SurveySpec

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INT64 = 2**63


def column_labels(
    spec: SurveySpec,
    table: pl.DataFrame,
    field: str,
    column: str,
    labels: dict[Code, str] | None,
    labels_field: str,
    bins: list[Bin] | None,
    scale: list[str] | None = None,
) -> pl.Expr:
    """Expression giving each respondent's label for a column; unknown codes are a spec error, not a null."""
    series = table[column]
    col = pl.col(column)
    if isinstance(series.dtype, pl.Decimal):
        series, col = series.cast(pl.Float64), col.cast(pl.Float64)
    if series.dtype.is_float():  # pandas codes a skipped answer as NaN: it is missing, not a value
        col = pl.when(col.is_not_nan()).then(col)
    values = [v for v in series.drop_nulls().unique().to_list() if not _is_nan(v)]
    if bins is not None:
        return _binned(spec, field, column, series.dtype, col, values, bins)
    if labels is not None:
        return _coded(spec, labels_field, column, series, col, values, labels)
    # booleans too: 1, 1.0 and true name the same answer, "1", as in the survey's 0/1 dummies
    integral = (series.dtype.is_numeric() or series.dtype == pl.Boolean) and values and all(map(_integral, values))
    text = col.cast(pl.Int64).cast(pl.String) if integral else col.cast(pl.String)
    if scale is not None:
        answers = table.select(text.alias("answer"))["answer"].drop_nulls().unique().sort().to_list()
        stray = [a for a in answers if a not in scale]
        if stray:
            raise ConfigError(spec.path, [(field, f"column {column!r} has answers off the scale: {stray[:10]}")])
    return text


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


def _coded(
    spec: SurveySpec,
    labels_field: str,
    column: str,
    series: pl.Series,
    col: pl.Expr,
    values: list,
    labels: dict[Code, str],
) -> pl.Expr:
    """Labels keyed as the column's values are typed: YAML keys 1, "1", 1.0 and true meet the column halfway,
    and a key no value of the column's type can equal is refused rather than left to match nothing."""
    dtype = series.dtype
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
    unknown = [v for v in values if v not in mapping]
    if unknown:
        raise ConfigError(
            spec.path,
            [(labels_field, f"column {column!r} has values without a label: {sorted(unknown, key=str)[:10]}")],
        )
    if not values:
        return pl.lit(None, dtype=pl.String)
    textual = dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    source = col.cast(pl.String) if textual else col
    # replace the values that occur (typed as the column), so no key is ever cast into a type it does not fit
    old = pl.Series(values, dtype=pl.String if textual else series.dtype)
    return source.replace_strict(old, [mapping[v] for v in values], default=None, return_dtype=pl.String)


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
