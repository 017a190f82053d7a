"""`polypref template-items` on any hand-edited item spec: exit 0 with exactly the items the spec describes, or
exit 2 naming the spec file and a field; never a traceback, never a half-written items file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from polypref.items.templated import resolve_item_spec
from tests.conftest import run_cli
from tests.property.strategies import junk, mutated, texts

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = yaml.safe_load(resolve_item_spec("gss_values").read_text())
spec_values = st.one_of(
    junk,
    texts,
    st.sampled_from(["too little", "too much", "about right", "{topic} {group}", "{argument}", "{x}", "}{"]),
    st.lists(st.sampled_from(["On {topic} for {group}?", "{topic}", "older people"]), max_size=3),
)


def _expected(spec: dict[str, Any]) -> int:
    return len(spec["topics"]) * len(spec["groups"]) * len(spec["dimensions"]) * len(spec["templates"])


@SETTINGS
@given(spec=mutated(BASE, spec_values, max_mutations=2), population=st.booleans())
@example(spec={**BASE, "topics": {**BASE["topics"], next(iter(BASE["topics"])): "x\x85y"}}, population=False)
@example(spec={**BASE, "topics": {**BASE["topics"], next(iter(BASE["topics"])): "\ud800"}}, population=False)
def test_an_item_spec_makes_exact_items_or_exit_2_naming_the_file(spec: Any, population: bool) -> None:
    with tempfile.TemporaryDirectory() as here:
        path, out = Path(here) / "spec.yaml", Path(here) / "items.jsonl"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8", errors="surrogatepass")
        code, _, stderr = run_cli(
            "template-items", str(path), "--out", str(out), *(["--population", "gss_spending"] if population else [])
        )
        event(f"exit {code}")
        assert code in (0, 2), stderr
        if code == 2:
            assert str(path) in stderr and "Traceback" not in stderr
            assert sorted(p.name for p in Path(here).iterdir()) == ["spec.yaml"]  # nothing half-written
            return
        text = out.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.split("\n") if line]  # not splitlines: U+2028 is text
        # what the file says, which the rows must match: PyYAML writes a NEL (U+0085) inside a scalar as a line
        # break, and YAML reads a line break there back as a space
        spec = yaml.safe_load(path.read_text(encoding="utf-8", errors="surrogatepass"))
    assert len(rows) == _expected(spec) and len({r["id"] for r in rows}) == len(rows)
    words = set(spec["topics"].values())
    for row in rows:
        assert row["topic"] in spec["topics"] and len(row["responses"]) == 2
        assert any(w in row["prompt"] for w in words) or not all(words)
        stances = [r["stance"] for r in row["responses"]]
        assert stances[0] != stances[1] and all(s in spec["options"] for s in stances)
