"""`output.splits`: any mapping of split names to shares either loads exactly as written, or stops the CLI with
exit 2 naming `output.splits` and why, before any work; and the shares assign personas test first."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from polypref.config import load_config
from polypref.splits import NAMES, assign, split_fraction, split_of
from tests.conftest import run_cli

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.one_of(st.sampled_from(NAMES), st.sampled_from(["dev", "Train", "", "val", "eval"]))
numbers = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0, 1, 0.1, 0.9, 1 / 3, 2 / 3, -0.0, -0.1, 1.5, 1 + 1e-12, 1 - 1e-12]),
    st.floats(allow_nan=True, allow_infinity=True),
)
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@st.composite
def summing_to_one(draw: st.DrawFn) -> dict[str, Any]:
    """Shares over known names that sum to 1 up to rounding: the last split takes what the others leave."""
    chosen = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    shares: dict[str, Any] = {}
    left = 1.0
    for name in chosen[:-1]:
        shares[name] = draw(st.floats(0, left))
        left -= shares[name]
    shares[chosen[-1]] = max(left, 0.0)
    if draw(st.booleans()):  # off by more than the tolerance: invalid
        name = draw(st.sampled_from(chosen))
        shares[name] += draw(st.sampled_from([1e-8, -1e-8, 0.5, -2.0]))
    return shares


mappings = st.one_of(
    summing_to_one(),
    st.dictionaries(names, st.one_of(numbers, junk), max_size=4),
    st.sampled_from([{"train": 1}, {"test": 1.0}, {"train": 0.8, "validation": 0.1, "test": 0.1}]),
)
values = st.one_of(mappings, junk, st.floats(0, 1))


def _valid(value: Any) -> bool:
    """The rule, stated apart from the code under test."""
    if not isinstance(value, dict) or not value or any(name not in NAMES for name in value):
        return False
    shares = list(value.values())
    if any(isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s < 0 for s in shares):
        return False
    return abs(math.fsum(shares) - 1) <= 1e-9


@SETTINGS
@given(value=values)
def test_split_shares_load_exactly_or_exit_2_naming_the_field(value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "build.yaml"
        config.write_text(yaml.safe_dump({"population": {"size": 5}, "output": {"splits": value}}, sort_keys=False))
        if _valid(value):
            event("valid")
            loaded = load_config(config).output.splits
            assert loaded == value and list(loaded) == list(value)  # exact values, in the order written
            assert all(assign(f"p{i}", loaded) in value for i in range(20))
            return
        event("invalid")
        out = Path(tmp) / "out"
        code, stdout, stderr = run_cli("build", str(config), "--out", str(out), "--no-progress")
        assert code == 2, (stdout, stderr)
        assert "output.splits" in stderr and "unknown key" not in stderr and "Traceback" not in stderr
        assert not out.exists()  # before any work


def test_a_bad_share_names_the_reason() -> None:
    for override, reason in [
        ("output.splits={train: 0.9}", "must sum to 1, not 0.9"),
        ("output.splits={train: 0.9, dev: 0.1}", "unknown split 'dev' (allowed: train, validation, test)"),
        ("output.splits={}", "name at least one split"),
        ("output.splits={train: 1.1, test: -0.1}", "greater than or equal to 0"),
    ]:
        code, _, stderr = run_cli("validate", "--set", override)
        assert code == 2 and "output.splits" in stderr and reason in stderr, (override, stderr)


@settings(max_examples=300, deadline=None)
@given(
    persona=st.text(min_size=1, max_size=12),
    test=st.floats(0, 1),
    validation=st.floats(0, 1),
)
def test_shares_are_laid_out_test_first(persona: str, test: float, validation: float) -> None:
    """The test personas of a share are split_of's whatever else is configured; validation comes next."""
    validation *= 1 - test
    shares = {"train": 1 - test - validation, "validation": validation, "test": test}
    place = split_fraction(persona)
    got = assign(persona, shares)
    assert (got == "test") == (split_of(persona, test) == "test") == (place < test)
    if got == "validation":
        assert test <= place  # and below test + validation, but for rounding at the very top
    assert assign(persona, {"train": 1 - test, "test": test}) == split_of(persona, test)


def test_one_split_holds_everyone() -> None:
    assert {assign(f"p{i}", {"train": 1.0}) for i in range(200)} == {"train"}
    with pytest.raises(ValueError, match="no split has a share above 0"):
        assign("p", {})
