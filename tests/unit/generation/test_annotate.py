"""Annotating open items through the OpenAI backend against a real local server that plays the model."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.generation.annotate import annotate, annotator, to_jsonl
from polypref.items import load_items
from polypref.population import load_spec
from tests.conftest import CliResult, run_cli
from tests.openai_api import ChatAPIServer, prefer_the_longer, serve

FIXTURES = Path(__file__).parents[2] / "fixtures" / "items"
SPEC = load_spec("gss_spending")


class Model:
    """Answers annotation questions: the topic by keywords ("none" for a prompt on no survey question), the stance
    by the response's first word; the first time it sees a question about a neighbourhood park it rambles instead
    (an answer that names no option). As a judge (a build with this endpoint) it prefers the longer response."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, body: dict) -> tuple[str, str]:
        question = body["messages"][-1]["content"]
        if "<<<PROMPT>>>" not in question:
            return prefer_the_longer(body)
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


OFF_SURVEY = {  # an open item on none of the GSS spending questions
    "id": "open-3",
    "prompt": "Which pizza topping is best?",
    "responses": [{"text": "Mushrooms, every time."}, {"text": "Pineapple, and I will not apologise."}],
}


def _with_off_survey(folder: Path) -> Path:
    path = folder / "open_and_off_survey.jsonl"
    path.write_text((FIXTURES / "open_polypref.jsonl").read_text() + json.dumps(OFF_SURVEY) + "\n")
    return path


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
    assert (result.topics_set, result.stances_set, result.off_survey, result.unresolved) == (1, 5, 0, 0)
    assert all(i.annotated for i in result.items)
    # what it cost, retries included, as the server counted the requests (each reports 100 + 20 tokens)
    assert result.spent == {
        "requests": server.requests,
        "prompt_tokens": 100 * server.requests,
        "completion_tokens": 20 * server.requests,
    }

    written = tmp_path / "annotated.jsonl"
    written.write_bytes(to_jsonl(result.items))
    again = load_items(str(written), SPEC)  # polypref's own format: the simulator can judge it now
    assert again == result.items
    source = (FIXTURES / "open_polypref.jsonl").read_text()
    assert all(json.dumps(r.text)[1:-1] in source for i in again for r in i.responses)


def test_an_item_on_none_of_the_questions_stays_open_and_is_not_unresolved(
    server: ChatAPIServer, tmp_path: Path
) -> None:
    items = load_items(str(_with_off_survey(tmp_path)), SPEC)
    result = annotate(items, SPEC, _generator(server), seed=0, work=tmp_path)
    assert result.unresolved == 0  # "none" is a valid answer, not one that named no option
    park, leaves, pizza = result.items
    assert pizza.topic is None and all(r.stance is None for r in pizza.responses)  # "none" is an answer: kept open
    assert park.annotated and leaves.annotated
    assert (result.topics_set, result.stances_set, result.off_survey, result.unresolved) == (1, 5, 1, 0)
    assert result.still_open == 1


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


def _cli(*args: str, cwd: Path) -> CliResult:
    return run_cli(*args, cwd=cwd)


def _config(tmp_path: Path, server: ChatAPIServer, source: Path, **items: object) -> Path:
    """A build config that annotates (and judges) through ``server``; the fidelity check, which these tests are not
    about, is off (with an LLM judge it would ask personas x 18 survey questions first)."""
    config = tmp_path / "build.yaml"
    judge = {
        "backend": "openai",
        "model": "m",
        "base_url": server.base_url,
        "api_key_env": None,
        "samples": 2,
        "temperature": 0.7,
    }
    config.write_text(
        yaml.safe_dump(
            {
                "population": {"size": 5},
                "items": {"source": str(source), **items},
                "judge": judge,
                "fidelity": {"check": False},
            }
        )
    )
    return config


def _run_printed(stdout: str, cwd: Path) -> dict[str, list[str]]:
    """Run every polypref command annotate printed, as printed (a real polypref process each, from the folder
    annotate ran in); each must exit 0. Returns their arguments by subcommand."""
    commands = [shlex.split(line[line.index("polypref ") :]) for line in stdout.splitlines() if "polypref " in line]
    for command in commands:
        ran = _cli(*command[1:], cwd=cwd)
        assert ran.returncode == 0, f"printed {shlex.join(command)!r} exited {ran.returncode}: {ran.stderr}"
    assert sorted(c[1] for c in commands) == ["build", "validate"], stdout
    return {c[1]: c for c in commands}


@pytest.mark.integration  # runs the printed build: Prefect's flow, end to end
def test_the_annotate_command_prints_a_simulated_build_that_works(server: ChatAPIServer, tmp_path: Path) -> None:
    # a sample and a pairing as the original source is read: the annotated file is that sample, paired as configured
    config = _config(tmp_path, server, FIXTURES / "open_polypref.jsonl", limit=2, pairing="random", pairs_per_prompt=2)
    result = _cli("annotate", "build.yaml", "--out", "annotated.jsonl", "--set", "seed=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    judged = server.requests
    printed = _run_printed(result.stdout, tmp_path)
    assert server.requests == judged  # the simulated judge built it: nothing was asked of the endpoint
    assert "judge={backend: simulated, samples: 2}" in printed["build"] and "seed=1" in printed["build"]
    summary = BuildState(tmp_path / printed["build"][printed["build"].index("--out") + 1]).summary()
    assert summary is not None
    assert summary.judgments == 5 * (2 + 1) * 2 * 2  # park: 2 pairs drawn, leaf blowers: 1; 2 orders, 2 samples
    assert (
        f"wrote annotated.jsonl: 2 items; 1 topics and 5 stances set by m; 0 items still open; {judged} requests "
        f"({100 * judged} prompt and {20 * judged} completion tokens)\n"
    ) in result.stdout
    again = _cli("annotate", str(config), "--out", "annotated.jsonl", cwd=tmp_path)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr  # never overwrites silently


@pytest.mark.integration  # runs the printed build: Prefect's flow, end to end
def test_an_item_on_no_question_is_counted_open_and_the_printed_build_works(
    server: ChatAPIServer, tmp_path: Path
) -> None:
    _config(tmp_path, server, _with_off_survey(tmp_path))
    result = _cli("annotate", "build.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    annotated, asked = server.requests, server.asked("judgment")
    printed = _run_printed(result.stdout, tmp_path)  # the simulated judge would refuse the pizza: the LLM judges
    assert "judge=" not in " ".join(printed["build"]) and server.asked("judgment") > asked
    assert (
        "3 items; 1 topics and 5 stances set by m; 1 items still open (1 about none of the survey's questions); "
        f"{annotated} requests" in result.stdout
    )


@pytest.mark.integration  # runs the printed build: Prefect's flow, end to end
def test_prompts_alone_stay_readable_and_the_printed_build_generates_and_judges_them(
    server: ChatAPIServer, tmp_path: Path
) -> None:
    prompt = {"id": "p1", "prompt": "How would you improve your neighbourhood park?"}
    (tmp_path / "prompts.jsonl").write_text(json.dumps(prompt) + "\n")
    writer = {"backend": "openai", "model": "g", "base_url": server.base_url, "api_key_env": None, "temperature": 0.7}
    _config(tmp_path, server, tmp_path / "prompts.jsonl", format="prompts")
    result = _cli("annotate", "build.yaml", "--set", f"generate={json.dumps({'generators': [writer]})}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # still a prompt alone (polypref's reader refuses an empty list of responses), now with its topic
    assert json.loads((tmp_path / "annotated.jsonl").read_text()) == {**prompt, "topic": "natpark"}
    printed = _run_printed(result.stdout, tmp_path)  # generated responses have no stances: the LLM judge judges
    assert "judge=" not in " ".join(printed["build"]) and server.asked("judgment") > 0


def test_the_annotate_command_refuses_the_simulated_judge(tmp_path: Path) -> None:
    result = _cli("annotate", "--out", "x.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and "judge.backend" in result.stderr and not (tmp_path / "x.jsonl").exists()
