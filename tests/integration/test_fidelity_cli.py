"""`polypref fidelity` and the build's fidelity check and gate, through the CLI and the Prefect flows."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from polypref.dataset.configs import CONFIGS
from tests.conftest import load_with_datasets, run_cli
from tests.openai_api import judge_settings

pytestmark = pytest.mark.integration


def test_fidelity_on_the_defaults_prints_and_writes_the_figures(tmp_path):
    path = tmp_path / "fidelity.json"
    code, out, err = run_cli("fidelity", "--json", str(path))
    assert code == 0, err
    figures = json.loads(path.read_text())
    assert set(figures["overall"]) == {"tvd", "alignment"}
    # the simulator answers from the true attitudes: only the sampling of 200 personas separates them
    assert figures["overall"]["tvd"] <= 0.05 and figures["overall"]["alignment"] >= 0.95
    assert figures["overall"] == figures["floor"]["overall"]
    groups = figures["groups"]
    assert len(groups) == 24 and all(set(g) == {"tvd", "alignment"} for g in groups.values())
    assert set(figures["baseline"]["groups"]) == set(groups)
    assert figures["baseline"]["overall"]["tvd"] > figures["overall"]["tvd"] + 0.2  # role-play is what helps
    assert f"TVD {figures['overall']['tvd']:.3f}" in out and "persona-free model" in out
    assert sum(figures["counts"]["group_personas"].values()) == 200

    code, _, err = run_cli("fidelity", "--json", str(path))  # never overwrites silently
    assert code == 2 and "exists" in err


def test_bad_fidelity_settings_stop_before_any_work(tmp_path):
    code, _, err = run_cli("fidelity", "--set", "fidelity.topics=[natspac, nope]")
    assert code == 2 and "fidelity.topics" in err and "nope" in err and "Traceback" not in err
    code, _, err = run_cli("build", "--out", str(tmp_path / "o"), "--set", "fidelity.topics=[nope]")
    assert code == 2 and "fidelity.topics" in err and not (tmp_path / "o").exists()


def test_the_gate_stops_a_build_before_judging_and_the_check_lands_in_the_card(tmp_path):
    out = tmp_path / "out"
    base = ["build", "--out", str(out), "--set", "population.size=30", "--no-progress"]
    code, _, err = run_cli(*base, "--set", "fidelity.gate=true", "--set", "fidelity.max_tvd=0.01")
    assert code == 4, err
    assert "fidelity gate" in err and "fidelity.max_tvd 0.01" in err and "Traceback" not in err
    assert not list((out / "data" / "judgments").glob("*.parquet"))  # stopped before judging
    assert not list((out / ".polypref" / "store").rglob("*.parquet"))

    code, _, err = run_cli(*base, "--set", "fidelity.gate=true", "--set", "fidelity.max_tvd=0.3")
    assert code == 0, err
    card = (out / "README.md").read_text()
    saved = json.loads((out / ".polypref" / "fidelity.json").read_text())["report"]
    assert "## Fidelity" in card and f"| personas | {saved['overall']['tvd']:.3f} |" in card
    assert saved["counts"]["personas"] == 30

    (out / ".polypref" / "fidelity.json").write_text("{damaged")  # asked again, not trusted
    code, _, err = run_cli(*base)
    assert code == 0, err
    assert json.loads((out / ".polypref" / "fidelity.json").read_text())["report"] == saved

    code, _, err = run_cli(*base, "--set", "fidelity.check=false")
    assert code == 0, err
    assert "## Fidelity" not in (out / "README.md").read_text()

    # every config of the finished build loads with `datasets`, the map included, and the card shows the map
    counts = {c: load_with_datasets(out, c).num_rows for c in CONFIGS if c != "episodes"}  # episodes: off
    assert counts["personas"] == 30 and counts["map"] == 30 + 1  # every persona and the persona-free judge
    assert "![Preference-space map](map.png)" in (out / "README.md").read_text() and (out / "map.png").is_file()

    # a gate that fails after a setting change stops before touching the finished dataset
    before = {p: p.read_bytes() for p in [out / "README.md", *sorted((out / "data").rglob("*.parquet"))]}
    code, _, err = run_cli(*base, "--set", "seed=5", "--set", "fidelity.gate=true", "--set", "fidelity.max_tvd=0.01")
    assert code == 4, err
    assert {p: p.read_bytes() for p in before} == before


def test_gss_items_spec_topics_have_the_surveys_wording():
    from polypref.population import load_spec

    spec = load_spec("gss_spending")
    assert all(spec.question(t).endswith(f"on {spec.attitudes.items[t].topic}?") for t in spec.attitudes.items)
    assert Path(spec.path).name == "gss_spending.yaml"


def test_the_saved_figures_are_asked_again_when_a_question_changes(tmp_path):
    """The fidelity key covers the survey's wording: an edited question is not answered from the saved report."""
    from dataclasses import replace

    from polypref import pipeline
    from polypref.config import load_config
    from polypref.fidelity.report import report_key

    plan = pipeline.plan(load_config(None, ["population.size=5"]), tmp_path / "out")
    spec = plan.population.spec
    reworded = spec.model_copy(
        update={"attitudes": spec.attitudes.model_copy(update={"question": "How do you feel about {topic}?"})}
    )
    edited = replace(plan, population=replace(plan.population, spec=reworded))
    assert report_key(edited) != report_key(plan) == report_key(replace(plan))


def test_a_json_path_that_is_not_a_plain_file_is_refused_before_any_work(tmp_path):
    target = tmp_path / "kept.json"
    target.write_text("orig")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for path in (link, fifo):
        code, _, err = run_cli("fidelity", "--json", str(path), "--overwrite")
        assert code == 2 and "not a plain file" in err and "Traceback" not in err, err
    assert link.is_symlink() and target.read_text() == "orig" and stat.S_ISFIFO(fifo.stat().st_mode)


def test_an_endpoint_that_answers_nothing_is_named_not_blamed_on_the_model():
    dead = [*judge_settings("http://127.0.0.1:9/v1"), "judge.max_retries=0", "population.size=10"]
    dead += ["fidelity.topics=[natspac]"]
    args = [arg for setting in dead for arg in ("--set", setting)]
    code, out, err = run_cli("fidelity", *args)
    assert code == 3, out + err
    assert "got no answer from the endpoint" in out and "run the same command again" in err
    code, _, err = run_cli("fidelity", *args, "--set", "fidelity.gate=true")
    assert code == 4 and "the endpoint gave no answer" in err and "stronger judge model" not in err, err
    assert "build stopped" not in err  # no build here
