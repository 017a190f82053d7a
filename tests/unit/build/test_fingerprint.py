"""A judge's key covers the code that decides its answers, and only that backend's: editing one backend's
judging code retires its stored judgments and no other backend's (a refactor of the simulator must not strand a
paid LLM build)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polypref.build.fingerprint import JUDGING_CODE
from polypref.judges import JUDGES

ROOT = Path(__file__).resolve().parents[3]
KEYS = """
import sys
from polypref.build.fingerprint import judge_key
from polypref.config import load_config
from polypref.population import load_spec
for backend in ("simulated", "vllm", "openai"):
    config = load_config(None, [f"judge.backend={backend}", "judge.model=m"] if backend != "simulated" else [])
    print(backend, judge_key(config, load_spec(config.population.spec)))
"""


def _keys(src: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", KEYS],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def test_every_backend_has_its_judging_code():
    assert set(JUDGING_CODE) == set(JUDGES)


@pytest.mark.process  # fresh interpreters over an edited copy of the source
def test_editing_one_backends_code_changes_only_its_key(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "polypref", src / "polypref", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "polypref" / "_assets").symlink_to(ROOT)  # personas/, prompts/, data/, ... as an installed wheel has them
    before = _keys(src)
    wire = src / "polypref" / "llms" / "openai_wire.py"
    wire.write_text(wire.read_text() + "\n# an edit\n")
    after = _keys(src)
    assert after["openai"] != before["openai"]
    assert after["simulated"] == before["simulated"] and after["vllm"] == before["vllm"]
    simulator = src / "polypref" / "judges" / "simulated.py"
    simulator.write_text(simulator.read_text() + "\n# an edit\n")
    again = _keys(src)
    assert again["simulated"] != after["simulated"]
    assert again["openai"] == after["openai"] and again["vllm"] == after["vllm"]
