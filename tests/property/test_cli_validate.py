"""`polypref validate` on any spec and items: exit 0, or exit 2 with a message naming the bad file; never a
traceback, and never an output folder (validate writes nothing)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli, spec_dict, survey_table
from tests.property.strategies import item_records, mutated, texts

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

spec_values = st.one_of(
    st.sampled_from(["region", "sex", "age", "t1", "nope", "mark", "drop", "../survey.parquet", "nope.j2"]),
    st.lists(st.sampled_from(["low", "mid", "high", "low"]), max_size=4),
    st.dictionaries(st.one_of(st.integers(0, 3), st.booleans(), st.sampled_from(["1", "x"])), texts, max_size=3),
    texts.filter(lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)),
)


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "survey.parquet"
    survey_table(n=300).write_parquet(path)
    return path


def _items_bytes(records: list[Any], form: str) -> bytes:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if form == "latin-1":
        return text.encode("latin-1", "replace")[:-1] + b"\xe9\n"
    return text.encode("utf-8", "surrogatepass")


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Run with the folder as working directory, where a stray output folder would appear."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _validate(config: Path) -> tuple[int, str, str]:
    return run_cli("validate", str(config))


@SETTINGS
@given(
    records=item_records,
    spec=mutated(spec_dict(source="../survey.parquet"), spec_values, max_mutations=1),
    items_form=st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "folder"]),
    size=st.sampled_from([1, 10, 25, 0]),
)
def test_validate_exits_0_or_2_naming_the_file(
    survey: Path, records: list[Any], spec: Any, items_form: str, size: int
) -> None:
    with tempfile.TemporaryDirectory(dir=survey.parent) as here:
        folder = Path(here)
        spec_path, items_path, config = folder / "spec.yaml", folder / "items.jsonl", folder / "build.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        if items_form == "folder":
            items_path.mkdir()
        else:
            items_path.write_bytes(_items_bytes(records, items_form))
        build = {"seed": 3, "population": {"spec": str(spec_path), "size": size}, "items": {"source": str(items_path)}}
        config.write_text(yaml.safe_dump(build), encoding="utf-8")
        written = sorted(folder.iterdir())
        with _inside(folder):
            code, stdout, stderr = _validate(config)
        assert sorted(folder.iterdir()) == written  # no output folder, no temp file left behind
    event(f"exit {code}")
    assert code in (0, 2), stderr
    if code == 2:
        assert any(str(p) in stderr for p in (config, spec_path, items_path, survey)), stderr
        assert "Traceback" not in stderr
    else:
        assert json.loads(stdout)["personas"] == size
