"""Issue 25, item 15: any value in a kept source column reaches the item's kept values exactly: a text as it is,
null as null, and numbers, lists and objects as JSON that reads back to the same value; a kept column the source
lacks is refused naming ``items.keep_columns``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polypref.config import ItemsConfig
from polypref.errors import ConfigError
from polypref.items import read_items
from polypref.population.spec import SurveySpec
from tests.conftest import spec_dict

SPEC = SurveySpec.model_validate(spec_dict())
FOLDER = Path(tempfile.mkdtemp(prefix="polypref-keep-"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_values, min_size=1, max_size=6), absent=st.booleans())
def test_kept_values_read_back_exactly(values: list[Any], absent: bool) -> None:
    rows = [{"prompt": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}", "extra": v} for i, v in enumerate(values)]
    if absent and len(rows) > 1:
        del rows[0]["extra"]  # a row without the key (others have it): null, like a Parquet null
    path = FOLDER / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    loaded = read_items(ItemsConfig(source=str(path), keep_columns=["extra"]), SPEC)
    assert loaded.kept is not None
    kept = dict(zip(loaded.kept.to_series(0), loaded.kept["extra"], strict=True))
    for item, row in zip(loaded.items, rows, strict=True):
        value, text = row.get("extra"), kept[item.id]
        if value is None or isinstance(value, str):
            assert text == value
        else:
            assert json.loads(text) == value
    with pytest.raises(ConfigError, match=r"items\.keep_columns: \['missing'\] is not a column"):
        read_items(ItemsConfig(source=str(path), keep_columns=["missing"]), SPEC)
