"""Annotating open items through the OpenAI backend against a real local server that plays the model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.annotate import annotate, annotator, to_jsonl
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.items import load_items
from polypref.population import load_spec
from tests.conftest import run_without_prefect
from tests.openai_api import ChatAPIServer, serve

FIXTURES = Path(__file__).parent.parent / "fixtures" / "items"
SPEC = load_spec("gss_spending")


class Model:
    """Answers annotation questions: the topic by keywords, the stance by the response's first word; the first
    time it sees a question about a neighbourhood park it rambles instead (an answer that names no option)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, body: dict) -> tuple[str, str]:
        question = body["messages"][-1]["content"]
        self.seen[question] += 1
        prompt = question.split("<<<PROMPT>>>")[1].split("<<<END PROMPT>>>")[0]
        if "<<<RESPONSE>>>" not in question:
            if "park" in prompt and self.seen[question] == 1:
                return "Well, it is hard to say which one.", "stop"
            if "park" in prompt:
                return " natpark.", "stop"
            return ("natenvir" if "leaf" in prompt else "none"), "stop"
        response = question.split("<<<RESPONSE>>>")[1].split("<<<END RESPONSE>>>")[0].strip()
        options = re.findall(r"^- (.+)$", question.split("Its answer options are:")[1], re.MULTILINE)
        return (f'"{options[0].upper()}"' if response.startswith(("Yes", "Add")) else options[-1]), "stop"


@pytest.fixture
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=Model()))


def _generator(server: ChatAPIServer):
    settings = ["judge.backend=openai", "judge.model=m", f"judge.base_url={server.base_url}", "judge.api_key_env=null"]
    return annotator(load_config(None, settings).judge)


def test_open_items_get_topics_and_stances_and_keep_their_texts(server: ChatAPIServer, tmp_path: Path) -> None:
    items = load_items(str(FIXTURES / "open_polypref.jsonl"), SPEC)
    result = annotate(items, SPEC, _generator(server), seed=0, work=tmp_path)
    park, leaves = result.items
    assert (park.topic, leaves.topic) == ("natpark", "natenvir")  # asked twice for the park; leaves had its topic
    scale = SPEC.scale("natpark")
    assert [r.stance for r in park.responses] == [scale[0], scale[-1], scale[-1]]
    assert [r.stance for r in leaves.responses] == [SPEC.scale("natenvir")[0], SPEC.scale("natenvir")[-1]]
    assert (result.topics_set, result.stances_set, result.unresolved) == (1, 5, 0)
    assert all(i.annotated for i in result.items)

    written = tmp_path / "annotated.jsonl"
    written.write_bytes(to_jsonl(result.items))
    again = load_items(str(written), SPEC)  # polypref's own format: the simulator can judge it now
    assert again == result.items
    source = (FIXTURES / "open_polypref.jsonl").read_text()
    assert all(json.dumps(r.text)[1:-1] in source for i in again for r in i.responses)


def test_labels_ratings_and_messages_survive_the_round_trip(server: ChatAPIServer, tmp_path: Path) -> None:
    for fixture in ("pairwise.jsonl", "completions.jsonl", "conversational_prompt.jsonl"):
        items = load_items(str(FIXTURES / fixture), SPEC)
        result = annotate(items, SPEC, _generator(server), seed=0, work=tmp_path)
        written = tmp_path / f"{fixture}.annotated.jsonl"
        written.write_bytes(to_jsonl(result.items))
        again = load_items(str(written), SPEC)
        assert [(i.id, i.label, i.messages) for i in again] == [(i.id, i.label, i.messages) for i in items]
        assert [[(r.id, r.text, r.score, r.model, r.messages) for r in i.responses] for i in again] == [
            [(r.id, r.text, r.score, r.model, r.messages) for r in i.responses] for i in items
        ]


def test_annotating_needs_an_llm_backend() -> None:
    with pytest.raises(ConfigError, match=r"judge\.backend"):
        annotator(load_config().judge)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polypref", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_annotate_command_makes_items_the_simulator_can_judge(server: ChatAPIServer, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "population": {"size": 5},
                "items": {"source": str(FIXTURES / "open_polypref.jsonl")},
                "judge": {"backend": "openai", "model": "m", "base_url": server.base_url, "api_key_env": None},
            }
        )
    )
    result = _cli("annotate", str(config), "--out", "annotated.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 items; 1 topics and 5 stances set by m; 0 items still open" in result.stdout
    again = _cli("annotate", str(config), "--out", "annotated.jsonl", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites silently

    simulated = load_config(None, ["population.size=5", f"items.source={tmp_path / 'annotated.jsonl'}"])
    summary = run_without_prefect(pipeline.plan(simulated, tmp_path / "out"))
    assert summary["judgments"] == 5 * (3 + 1) * 2  # 3 pairs of the park item, 1 of the leaf blowers, both orders


def test_the_annotate_command_refuses_the_simulated_judge(tmp_path: Path) -> None:
    result = _cli("annotate", "--out", "x.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "judge.backend" in result.stderr and not (tmp_path / "x.jsonl").exists()
