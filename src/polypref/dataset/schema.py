"""Record contracts: pydantic models (``dataset.row_models``) generate schemas/*.json; tables are validated
against those files.

``python -m polypref.dataset.schema --check`` fails when the files drift from the models; ``--update``
rewrites them. At run time the JSON Schema files (not the models) define the Arrow schema and the checks,
so what the files promise is what the Parquet holds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import polars as pl
import pyarrow as pa

from polypref import assets
from polypref.dataset.row_models import LabelRecord, generated
from polypref.errors import SchemaViolation


def _nullable(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    options = prop.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**prop, **rest[0], "anyOf": None}, len(rest) < len(options)
    return prop, False


LABEL_FIELDS = tuple(LabelRecord.model_fields)  # an episode's label struct, in this order
MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))


def _arrow_type(prop: dict[str, Any], struct_fields: list[str] | None, messages: bool = False) -> pa.DataType:
    if prop.get("x-arrow") == "text-or-messages":
        return MESSAGES if messages else pa.string()
    if prop.get("x-arrow") == "labels":
        text = MESSAGES if messages else pa.string()
        kinds = {"prompt": text, "chosen": text, "rejected": text}
        return pa.list_(pa.struct([pa.field(name, kinds.get(name, pa.string())) for name in LABEL_FIELDS]))
    if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
        return pa.list_(pa.string())
    if prop.get("x-arrow") == "struct":
        return pa.struct([pa.field(f, pa.string()) for f in (struct_fields or [])])
    kind = prop.get("type") or ("string" if "enum" in prop or "const" in prop else None)
    if kind == "string":
        return pa.timestamp("us", tz="UTC") if prop.get("format") == "date-time" else pa.string()
    simple = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
    if kind in simple:
        return simple[kind]
    raise ValueError(f"no Arrow type for JSON Schema {prop}")


def arrow_schema(name: str, struct_fields: dict[str, list[str]] | None = None, messages: bool = False) -> pa.Schema:
    """Arrow schema from schemas/<name>.json. Open objects (x-arrow: struct) get the given field names, and an
    optional one given none is left out (Parquet holds no struct without fields); texts that may be
    conversations (x-arrow: text-or-messages) are messages when ``messages``, else strings."""
    schema = assets.json_schema(name)
    required = set(schema.get("required", []))
    fields = []
    for column, raw in schema["properties"].items():
        prop, nullable = _nullable(raw)
        if prop.get("x-arrow") == "struct" and column not in required and not (struct_fields or {}).get(column):
            continue
        arrow = _arrow_type(prop, (struct_fields or {}).get(column), messages)
        fields.append(pa.field(column, arrow, nullable=nullable or column not in required))
    return pa.schema(fields)


def to_arrow(
    name: str, frame: pl.DataFrame, struct_fields: dict[str, list[str]] | None = None, messages: bool = False
) -> pa.Table:
    """Validate a frame against schemas/<name>.json and return it as an Arrow table in the schema's layout."""
    source = f"schemas/{name}.json"
    schema = arrow_schema(name, struct_fields, messages)
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:  # working columns beyond the schema are left out of the published table
        raise SchemaViolation(f"{source}: columns missing {missing}")
    _check_values(name, frame)
    for f in schema:
        if not f.nullable and frame[f.name].null_count():
            raise SchemaViolation(f"{source}: column {f.name} has nulls but is required")
    try:
        return frame.select(schema.names).to_arrow().cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as e:
        raise SchemaViolation(f"{source}: {e}") from None


def _check_values(name: str, frame: pl.DataFrame) -> None:
    """Enum and range constraints from the JSON Schema, checked on whole columns."""
    for column, raw in assets.json_schema(name)["properties"].items():
        prop, _ = _nullable(raw)
        col = pl.col(column)
        checks: list[tuple[pl.Expr, str]] = []
        if "enum" in prop:
            checks.append((~col.is_in(prop["enum"]), f"not one of {prop['enum']}"))
        if "const" in prop:
            checks.append((col != prop["const"], f"not {prop['const']!r}"))
        for key, op in (
            ("minimum", "lt"),
            ("maximum", "gt"),
            ("exclusiveMinimum", "le"),
            ("exclusiveMaximum", "ge"),
        ):
            if key in prop:
                checks.append((getattr(col, op)(prop[key]), f"violates {key} {prop[key]}"))
        for bad, reason in checks:
            count = frame.select(bad.fill_null(False).sum()).item()
            if count:
                raise SchemaViolation(f"schemas/{name}.json: column {column}: {count} values {reason}")


def main(argv: list[str]) -> int:
    """--check: exit 1 when schemas/ differ from the models; --update: rewrite them."""
    stale = []
    for file, schema in generated().items():
        path = assets.path("schemas", file)
        text = json.dumps(schema, indent=2) + "\n"
        if not path.exists() or path.read_text() != text:
            stale.append(file)
            if "--update" in argv:
                path.write_text(text)
    if stale and "--update" not in argv:
        print(f"schemas out of date: {stale}; run python -m polypref.dataset.schema --update", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
