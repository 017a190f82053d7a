"""Parquet written in parts (files.py write_parquet_parts) is the file written whole, byte for byte."""

from __future__ import annotations

import hashlib
import itertools

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polypref.errors import OutputError
from polypref.files import write_parquet, write_parquet_parts


def _table(n: int) -> pa.Table:
    return pa.table({"id": [f"row-{i}" for i in range(n)], "x": [i * 0.5 for i in range(n)]})


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 120),
    row_group_rows=st.integers(1, 50),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_a_table_written_in_parts_has_the_bytes_of_the_whole(tmp_path_factory, rows, row_group_rows, cuts):
    tmp = tmp_path_factory.mktemp("parts")
    table = _table(rows)
    bounds = sorted({0, rows, *(c for c in cuts if c <= rows)})
    parts = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)] or [table]
    whole = write_parquet(table, tmp / "whole.parquet", row_group_rows)
    written = write_parquet_parts(iter(parts), tmp / "parts.parquet", row_group_rows)
    assert written.rows == whole.rows == rows
    assert (tmp / "parts.parquet").read_bytes() == (tmp / "whole.parquet").read_bytes()
    # the digest recorded at write time is the file's as it lies on disk
    assert written == whole and written.sha256 == hashlib.sha256((tmp / "parts.parquet").read_bytes()).hexdigest()


def test_a_failed_part_leaves_no_file_and_no_temp_file(tmp_path):
    def parts():
        yield _table(10)
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="disk is full"):
        write_parquet_parts(parts(), tmp_path / "w" / "train-00000.parquet", 4)
    assert list((tmp_path / "w").iterdir()) == []
