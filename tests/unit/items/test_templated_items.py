"""Items made from a spec (items/templated.py): the shipped spec, the CLI, and specs that are wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from polypref.errors import ConfigError
from polypref.items import load_items
from polypref.items.templated import load_item_spec, resolve_item_spec
from polypref.population import load_spec
from tests.conftest import CliResult, run_cli, run_without_prefect

SHIPPED = yaml.safe_load(resolve_item_spec("gss_values").read_text())


def test_the_shipped_spec_crosses_every_part_and_matches_the_gss_survey() -> None:
    spec = load_item_spec("gss_values")
    items = spec.items()
    parts = [SHIPPED[k] for k in ("topics", "groups", "dimensions", "templates")]
    assert len(items) == len(parts[0]) * len(parts[1]) * len(parts[2]) * len(parts[3]) == 72
    assert len({i.id for i in items}) == len(items) and len({i.prompt for i in items}) == len(items) // 3
    gss = load_spec("gss_spending")
    spec.check_against(gss, "gss_values")
    for item in items:
        assert item.topic in gss.attitudes.items and len(item.responses) == 2
        low, high = item.responses
        assert {low.stance, high.stance} == {"too little", "too much"}  # opposite poles of one dimension
        assert "{" not in item.prompt + low.text + high.text
    first = items[0]
    assert first.prompt == "Should the government spend more or less on health care for older people?"
    assert first.responses[0].text.startswith("Spend more on health care for older people: a society shares")


def test_the_cli_writes_items_a_build_reads_and_the_simulator_judges(tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    done = _polypref("template-items", "gss_values", "--out", str(out), "--population", "gss_spending")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 72 items" in done.stdout
    read = load_items(str(out), load_spec("gss_spending"))
    made = load_item_spec("gss_values").items()
    assert [(i.id, i.prompt, [(r.id, r.text, r.stance) for r in i.responses]) for i in read] == [
        (i.id, i.prompt, [(r.id, r.text, r.stance) for r in i.responses]) for i in made
    ]
    again = _polypref("template-items", "gss_values", "--out", str(out))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr and "Traceback" not in again.stderr

    config = load_config(None, [f"items.source={out}", "population.size=10"])
    summary = run_without_prefect(pipeline.plan(config, tmp_path / "out"))
    assert summary["judgments"] == 10 * 72 * 2
    assert summary["ground_truth_accuracy"]["kept"] > 0.5  # the simulator knows each option's stance


def _polypref(*args: str) -> CliResult:
    return run_cli(*args)


def _broken(path: Path, edit) -> Path:
    raw = copy.deepcopy(SHIPPED)
    edit(raw)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda r: r["templates"].__setitem__(1, "Spend on {topic}?"), "templates.1", "needs {group}"),
        (lambda r: r["templates"].append("On {topic} for {group} and {place}?"), "templates.2", "{place}"),
        (lambda r: r["templates"].append("On {topic} for {group} {"), "templates.2", "literal brace"),
        (lambda r: r["options"].pop("too much"), "dimensions.collective_vs_individual.poles.1.stance", "no option"),
        (lambda r: r["options"].__setitem__("too much", "Less."), "options.too much", "needs {argument}"),
        (
            lambda r: r["dimensions"]["need_vs_desert"]["poles"][1].__setitem__("stance", "too little"),
            "dimensions.need_vs_desert",
            "same stance",
        ),
        (lambda r: r["groups"].append(r["groups"][0]), "groups", "listed twice"),
        (lambda r: r.__setitem__("topics", {}), "topics", "at least 1"),
        (lambda r: r.__setitem__("extra", 1), "extra", "Extra inputs"),
    ],
)
def test_a_wrong_spec_names_its_field(tmp_path: Path, edit, field: str, reason: str) -> None:
    path = _broken(tmp_path / "spec.yaml", edit)
    with pytest.raises(ConfigError) as caught:
        load_item_spec(str(path))
    assert caught.value.source == str(path)
    assert any(f == field and reason in why for f, why in caught.value.problems), caught.value.problems


def test_topics_and_stances_must_be_the_populations(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["topics"]["natmoon"] = "parks"
        raw["dimensions"]["public_vs_private"]["poles"][0]["stance"] = "far too little"
        raw["options"]["far too little"] = "More: {argument}"

    path = _broken(tmp_path / "spec.yaml", edit)
    with pytest.raises(ConfigError) as caught:
        load_item_spec(str(path)).check_against(load_spec("gss_spending"), str(path))
    fields = [f for f, _ in caught.value.problems]
    assert fields == ["topics.natmoon", "dimensions.public_vs_private.poles.0.stance"]


def test_a_missing_spec_or_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shipped item specs: \\['gss_values'\\]"):
        load_item_spec("nope")
    for folder in (tmp_path / "d.yaml", tmp_path / "d"):
        folder.mkdir()
        with pytest.raises(ConfigError, match="a folder") as caught:
            load_item_spec(str(folder))
        assert caught.value.source == str(folder)
