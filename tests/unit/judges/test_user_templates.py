"""The user's own prompts: ``judge.templates`` (a folder whose files replace shipped templates of the same name)
and a spec's ``portrayal:`` path relative to the spec, both checked when they load, with the variables the
shipped templates get; their content, never where they lie, in the judge's key and provenance."""

from __future__ import annotations

import json
import keyword
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jinja2
import jinja2.meta
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polypref import assets, pipeline, prompts
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.judges.llm import PAIR_TEMPLATE, LLMJudge
from polypref.population import load_spec, sample_population
from polypref.records import Item, Persona, Response, ResponsePair, WorkUnit
from tests.conftest import run_without_prefect, spec_dict
from tests.openai_api import ChatAPIServer, judge_settings, request_kind, serve

MARK = "MY OWN PAIR PROMPT"
PAIR = MARK + "\n<<<RESPONSE A>>>\n{{ first | delimit }}\n<<<END RESPONSE A>>>\n<<<RESPONSE B>>>\n{{ second }}\n"


@pytest.fixture(scope="module")
def server() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer())


def _folder(root: Path, **templates: str) -> Path:
    """A template folder holding ``templates`` (file name with "." as "_dot_" -> text)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in templates.items():
        (root / name.replace("_dot_", ".")).write_text(text)
    return root


def _config(tiny_config: Path, judge: dict) -> Path:
    """The tiny build config with a judge section of its own, written beside it."""
    raw = yaml.safe_load(tiny_config.read_text())
    path = tiny_config.parent / "mine.yaml"
    path.write_text(yaml.safe_dump({**raw, "judge": judge}))
    return path


def _error(config: Path, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(config, list(overrides))
    return info.value


def _judged(server: ChatAPIServer, start: int) -> list[dict]:
    return [b for b in server.bodies[start:] if request_kind(b) == "judgment"]


def test_a_users_pairwise_template_is_what_the_server_receives(tiny_config, server, tmp_path, monkeypatch):
    """The folder is relative to the config file (the build runs from elsewhere): its judge_pairwise.j2 is the user
    message of every request, the shipped judge_system.j2 still the system message, and each judgment's
    provenance marks the user's template by name and hash only."""
    _folder(tiny_config.parent / "my_prompts", judge_pairwise_dot_j2=PAIR)
    config_file = _config(tiny_config, {"backend": "openai", "templates": "my_prompts"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(config_file, ["population.size=1", *judge_settings(server)])
    assert Path(config.judge.templates) == tiny_config.parent / "my_prompts"

    start = len(server.bodies)
    run_without_prefect(pipeline.plan(config, tmp_path / "out"), persona_free=False)
    bodies = _judged(server, start)
    assert bodies and all(b["messages"][1]["content"].startswith(MARK) for b in bodies)
    assert all("<<<USER PROMPT>>>" not in b["messages"][1]["content"] for b in bodies)  # not the shipped one
    assert all(b["messages"][0]["content"].startswith("You are role-playing") for b in bodies)

    judgments = pl.read_parquet(tmp_path / "out" / "data" / "judgments")
    provenance = judgments["prompt_template"].unique().to_list()
    pair_hash = prompts.template_hash(PAIR_TEMPLATE, tiny_config.parent / "my_prompts")
    assert provenance == [
        f"judge_system.j2:{prompts.template_hash('judge_system.j2')}, judge_pairwise.j2:{pair_hash} (user)"
    ]
    assert pair_hash != prompts.template_hash(PAIR_TEMPLATE)
    assert str(tmp_path) not in judgments.select(pl.col(pl.String)).write_csv()  # no path of this machine in a row


def test_a_changed_template_gives_a_new_judge_key_and_asks_again(tiny_config, server, tmp_path):
    """Stored judgments are reused under the same template, never under another: editing the user's file changes
    the judge's key and every unit is asked again; the shipped template has a key of its own."""
    folder = _folder(tmp_path / "p", judge_pairwise_dot_j2=PAIR)
    base = ["population.size=1", *judge_settings(server)]
    out = tmp_path / "out"

    def build(*overrides: str) -> tuple[str, int]:
        start = len(server.bodies)
        plan = pipeline.plan(load_config(tiny_config, [*base, *overrides]), out)
        run_without_prefect(plan, persona_free=False)
        return plan.judge_key, len(_judged(server, start))

    shipped_key, shipped_asked = build()
    first_key, first_asked = build(f"judge.templates={folder}")
    again_key, again_asked = build(f"judge.templates={folder}")
    (folder / PAIR_TEMPLATE).write_text(PAIR + "Think twice.\n")
    changed_key, changed_asked = build(f"judge.templates={folder}")

    assert first_key != shipped_key and first_asked == shipped_asked > 0  # other prompts: nothing reused
    assert again_key == first_key and again_asked == 0  # the same prompts: every answer reused
    assert changed_key not in (first_key, shipped_key) and changed_asked == first_asked
    # a copy of the folder elsewhere is the same prompts: the key holds the content, not the path
    moved = _folder(tmp_path / "moved", judge_pairwise_dot_j2=(folder / PAIR_TEMPLATE).read_text())
    assert build(f"judge.templates={moved}") == (changed_key, 0)


@pytest.mark.parametrize(
    ("files", "named"),
    [
        (
            {"judge_pairwise_dot_j2": "A: {{ first }}\nB:\n{{ second }\n"},
            ["judge_pairwise.j2", "line 3", "syntax error"],
        ),
        ({"judge_system_dot_j2": "{{ persona }} {{ mood }}"}, ["judge_system.j2", "'mood'", "'allow_ties'"]),
        ({"survey_question_dot_j2": "{{ question }} {{ scale }}"}, ["survey_question.j2", "'scale'", "'options'"]),
        ({"judge_sytem_dot_j2": "{{ persona }}"}, ["judge_sytem.j2", "judge_system.j2"]),
        ({"portrayal_dot_j2": "{{ a }}"}, ["portrayal.j2", "relative to the spec"]),
        ({"notes.txt": "{{ not a template"}, ["holds none of the templates"]),
    ],
    ids=["syntax-error", "unknown-variable", "unknown-survey-variable", "misspelt-name", "portrayal", "empty"],
)
def test_an_unusable_folder_is_refused_on_load_naming_the_file(tiny_config, files, named):
    _folder(tiny_config.parent / "bad", **files)
    error = _error(_config(tiny_config, {"backend": "vllm", "model": "m", "templates": "bad"}))
    assert error.source.endswith("mine.yaml")
    [(field, reason)] = error.problems
    assert field == "judge.templates" and all(n in reason for n in named), reason


def test_a_missing_folder_and_a_simulated_judge_are_refused(tiny_config, tmp_path):
    error = _error(tiny_config, "judge.backend=openai", "judge.model=m", f"judge.templates={tmp_path / 'nope'}")
    assert error.problems[0][0] == "judge.templates" and "not found" in error.problems[0][1]
    error = _error(tiny_config, f"judge.templates={tmp_path}")  # the simulator renders no prompt
    assert error.problems[0][0] == "judge.templates" and "unknown key" in error.problems[0][1]


def test_a_generator_refuses_templates_by_name(tiny_config, tmp_path):
    _folder(tmp_path / "p", judge_pairwise_dot_j2=PAIR)
    error = _error(
        tiny_config, f"generate={{generators: [{{backend: openai, model: m, templates: {tmp_path / 'p'}}}]}}"
    )
    assert any("templates: a judge setting" in reason for _, reason in error.problems), error


def test_the_users_survey_templates_ask_the_fidelity_questions(tiny_config, tmp_path):
    from polypref.fidelity.questions import question_messages, question_text

    folder = _folder(tmp_path / "p", survey_question_dot_j2="Q: {{ question }} | {{ options | join('/') }}")
    config = load_config(tiny_config, ["judge.backend=openai", "judge.model=m", f"judge.templates={folder}"])
    spec = load_spec(config.population.spec)
    text = question_text(spec, "t1", config.judge.templates)
    assert text == "Q: What is your view on public parks? | low/mid/high"
    system = question_messages(text, "a persona", config.judge.templates)[0]["content"]
    assert system == prompts.template("survey_system.j2").render(persona="a persona")  # not replaced: shipped


def test_a_spec_portrayal_relative_to_the_spec(tiny):
    """``portrayal:`` is a file beside the spec, or under a folder beside it, else a shipped template; checked when
    the spec loads with the variables every portrayal gets; its content is part of the judge's key."""
    (tiny["dir"] / "templates").mkdir()
    (tiny["dir"] / "templates" / "p.j2").write_text("From {{ a.region }}: {{ views.t1 or 'no answer' }}")
    (tiny["dir"] / "mine.j2").write_text("Mine: {{ a.sex }}")

    def personas(portrayal: str) -> list[Persona]:
        tiny["spec"].write_text(yaml.safe_dump(spec_dict(portrayal=portrayal)))
        return list(sample_population(load_spec(str(tiny["spec"])), 5, "proportional", seed=0).personas)

    assert all(
        p.portrayal == f"From {p.attributes['region']}: {p.attitudes['t1'] or 'no answer'}"
        for p in personas("templates/p.j2")
    )
    assert all(p.portrayal == f"Mine: {p.attributes['sex']}" for p in personas("mine.j2"))
    assert all(p.portrayal.startswith("You are a survey respondent") for p in personas("portrayal.j2"))  # shipped

    (tiny["dir"] / "templates" / "p.j2").write_text("{{ a.region }} {{ opinions }}")
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(portrayal="templates/p.j2")))
    with pytest.raises(ConfigError) as info:
        load_spec(str(tiny["spec"]))
    assert info.value.source == str(tiny["spec"])
    [(field, reason)] = info.value.problems
    assert field == "portrayal" and "'opinions'" in reason and "'views'" in reason and "p.j2" in reason


def test_a_changed_spec_portrayal_changes_the_judge_key(tiny, tiny_config):
    from polypref.build.fingerprint import judge_key

    (tiny["dir"] / "p.j2").write_text("I live in the {{ a.region }}.")
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(portrayal="p.j2")))
    config = load_config(tiny_config, ["judge.backend=openai", "judge.model=m"])
    before = judge_key(config, load_spec(str(tiny["spec"])))
    (tiny["dir"] / "p.j2").write_text("I live in the {{ a.region }}, I said.")
    assert judge_key(config, load_spec(str(tiny["spec"]))) != before


# -- any template text -----------------------------------------------------------------------------------


def _shipped_variables(name: str) -> frozenset[str]:
    """What a shipped template uses: all that polypref renders it with."""
    env = jinja2.Environment()
    env.filters["delimit"] = str
    return frozenset(jinja2.meta.find_undeclared_variables(env.parse(assets.path("prompts", name).read_text())))


ALLOWED = _shipped_variables(PAIR_TEMPLATE)
RESERVED = set(keyword.kwlist) | {"true", "false", "none", "True", "False", "None", "loop", "self", "varargs"}
RESERVED |= {"kwargs", "caller", "super"} | set(jinja2.Environment().globals)
literal = st.text(st.characters(exclude_characters="{}\r", exclude_categories=("Cs",)), max_size=12)
unknown_name = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in ALLOWED and n not in RESERVED
)
segments = st.lists(
    st.one_of(literal.map(lambda t: ("text", t)), st.sampled_from(sorted(ALLOWED)).map(lambda n: ("var", n))),
    max_size=8,
)


@pytest.fixture(scope="module")
def unit() -> WorkUnit:
    persona = sample_population(load_spec("gss_spending"), 1, "proportional", seed=0).personas[0]
    item = Item(
        "i",
        "natfare",
        "Spend more?",
        (Response("r1", "Yes.", "too little", 0.0), Response("r2", "No.", "too much", 1.0)),
    )
    return WorkUnit(persona, ResponsePair.of(item, *item.responses), "AB", 0)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(parts=segments, strangers=st.lists(unknown_name, max_size=2, unique=True), at=st.integers(0, 8))
def test_any_template_text_renders_or_is_refused_naming_the_variable(unit, parts, strangers, at):
    """Text with variables the pair prompt gets loads and renders (its literal text kept, in order); with any
    other variable it is refused when the config loads, naming the file and every such variable; never else."""
    parts = parts[:at] + [("var", n) for n in strangers] + parts[at:]
    text = "".join(t if kind == "text" else f"{{{{ {t} }}}}" for kind, t in parts)
    with tempfile.TemporaryDirectory() as root:
        folder = _folder(Path(root) / "t", judge_pairwise_dot_j2=text)
        config = Path(root) / "c.yaml"
        judge_section = {"backend": "openai", "model": "m", "templates": "t", "api_key_env": None}
        config.write_text(json.dumps({"judge": judge_section}))
        if strangers:
            error = _error(config)
            [(field, reason)] = error.problems
            assert field == "judge.templates" and "judge_pairwise.j2" in reason
            assert all(repr(n) in reason for n in strangers) and all(repr(n) in reason for n in sorted(ALLOWED))
            return
        judge = LLMJudge(load_config(config).judge, seed=0)
        assert Path(judge.config.templates) == folder
        user = judge.messages(unit, "a persona")[1]["content"]
    rest = user
    for kind, t in parts:
        if kind == "text" and t.rstrip("\n"):
            assert t.rstrip("\n") in rest
            rest = rest[rest.index(t.rstrip("\n")) + len(t.rstrip("\n")) :]
