"""One spelling across the CLI (issue 27): a build folder as the first argument, --out for what a command writes,
--json PATH for its figures (``-``: print only them), --overwrite to replace what is there. The spellings of
before 0.2 (--force, `init PATH`, the --json flag of status) still work until 0.3, each with a one-line message.

In process (run_cli); the one build, made without Prefect, is shared by the module's tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import items_records, run_cli, run_without_prefect, spec_dict, survey_table

REMOVED = "is deprecated and will be removed in 0.3"


def deprecation_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if REMOVED in line]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished build of the tiny survey (tests/conftest.py's tiny_config), made once for the module."""
    here = tmp_path_factory.mktemp("spellings")
    survey_table().write_parquet(here / "survey.parquet")
    (here / "tiny.yaml").write_text(yaml.safe_dump(spec_dict()))
    (here / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items_records()))
    settings = {
        "seed": 3,
        "population": {"spec": str(here / "tiny.yaml"), "size": 60},
        "items": {"source": str(here / "items.jsonl")},
        "output": {"units_per_shard": 200, "row_group_rows": 1000},
    }
    (here / "build.yaml").write_text(yaml.safe_dump(settings))
    out = here / "out"
    run_without_prefect(pipeline.plan(load_config(here / "build.yaml", []), out))
    return out


# --- status and evaluate: --json PATH, `-` for stdout ---------------------------------------------------------


def test_status_json_path_writes_the_figures_and_dash_prints_only_them(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a file named "-" would land
    target = tmp_path / "status.json"
    code, stdout, stderr = run_cli("status", str(folder), "--json", str(target))
    assert code == 0, stderr
    written = json.loads(target.read_text())
    assert (
        written["finished"] and written["folder"] == str(folder) and f"wrote {target}" in stdout
    )  # the text figures too, and where the JSON went
    assert not deprecation_lines(stderr)

    code, stdout, stderr = run_cli("status", str(folder), "--json", "-")
    assert code == 0 and not deprecation_lines(stderr), stderr
    assert json.loads(stdout) == written  # stdout is the JSON alone
    assert not (tmp_path / "-").exists()


def test_status_json_file_is_replaced_only_with_overwrite(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_text("mine")
    code, _, stderr = run_cli("status", str(folder), "--json", str(target))
    assert code == 2 and "exists; pass --overwrite to replace it" in stderr
    assert target.read_text() == "mine"
    code, _, stderr = run_cli("status", "--json", str(target), "--overwrite", str(folder))  # options first
    assert code == 0 and not deprecation_lines(stderr), stderr
    assert json.loads(target.read_text())["finished"] is True


@pytest.mark.parametrize(
    "args",
    [["FOLDER", "--json"], ["--json", "FOLDER"], ["FOLDER", "--json", "--no-overwrite"]],
    ids=["flag-last", "flag-first", "option-next"],
)
def test_old_status_json_flag_still_prints_the_json_with_a_warning(
    folder: Path, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli("status", *(str(folder) if a == "FOLDER" else a for a in args))
    assert code == 0, stderr
    assert json.loads(stdout)["folder"] == str(folder)
    (line,) = deprecation_lines(stderr)
    assert "--json -" in line  # says what to write now


def test_evaluate_json_dash_prints_only_the_json(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli("evaluate", str(folder), "--json", "-")
    assert code == 0 and not (tmp_path / "-").exists(), stderr
    figures = json.loads(stdout)
    assert figures["folder"] == str(folder) and "overall" in figures


def test_evaluate_replaces_its_json_with_overwrite_and_still_with_force(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "fig.json"
    target.write_text("mine")
    code, _, stderr = run_cli("evaluate", str(folder), "--json", str(target))
    assert code == 2 and "pass --overwrite" in stderr and target.read_text() == "mine"

    code, _, stderr = run_cli("evaluate", str(folder), "--json", str(target), "--overwrite")
    assert code == 0 and not deprecation_lines(stderr), stderr
    assert json.loads(target.read_text())["folder"] == str(folder)

    target.write_text("mine")
    code, _, stderr = run_cli("evaluate", str(folder), "--json", str(target), "--force")
    assert code == 0, stderr
    assert json.loads(target.read_text())["folder"] == str(folder)
    (line,) = deprecation_lines(stderr)
    assert line.startswith("warning: --force ") and line.endswith("use --overwrite")


# --- --overwrite, and --force its old spelling, on the commands that write a file ------------------------------


def test_init_writes_with_out_and_replaces_only_with_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "mine.yaml"
    code, stdout, stderr = run_cli("init", "--out", str(target))
    assert code == 0 and not deprecation_lines(stderr), stderr
    assert target.read_text().count("#") > 20 and f"wrote {target}" in stdout
    target.write_text("mine")
    code, _, stderr = run_cli("init", "--out", str(target))
    assert code == 2 and "exists; pass --overwrite to replace it" in stderr and target.read_text() == "mine"
    code, _, stderr = run_cli("init", "--out", str(target), "--overwrite")
    assert code == 0 and not deprecation_lines(stderr), stderr
    assert target.read_text() != "mine"


def test_init_writes_build_yaml_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli("init")
    assert code == 0, stderr
    assert (tmp_path / "build.yaml").read_text().count("#") > 20


def test_old_init_path_and_force_still_work_with_a_warning_each(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    code, _, stderr = run_cli("init", str(target))
    assert code == 0, stderr
    assert target.read_text().count("#") > 20
    (line,) = deprecation_lines(stderr)
    assert "polypref init PATH" in line and f"polypref init --out {target}" in line

    target.write_text("mine")
    code, _, stderr = run_cli("init", str(target), "--force")
    assert code == 0, stderr
    assert target.read_text() != "mine"
    assert len(deprecation_lines(stderr)) == 2 and "use --overwrite" in stderr


def test_init_refuses_a_path_given_twice(tmp_path: Path) -> None:
    code, _, stderr = run_cli("init", str(tmp_path / "a.yaml"), "--out", str(tmp_path / "b.yaml"))
    assert code == 2 and "give the config's path once, with --out" in stderr
    assert not list(tmp_path.iterdir())


def test_init_spec_overwrite_and_old_force(tmp_path: Path) -> None:
    survey_table().write_parquet(tmp_path / "survey.parquet")
    target = tmp_path / "spec.yaml"
    target.write_text("mine")
    code, _, stderr = run_cli("init-spec", str(tmp_path / "survey.parquet"), "--out", str(target))
    assert code == 2 and "pass --overwrite" in stderr and target.read_text() == "mine"
    code, _, stderr = run_cli("init-spec", str(tmp_path / "survey.parquet"), "--out", str(target), "--overwrite")
    assert code == 0 and not deprecation_lines(stderr), stderr
    drafted = target.read_text()
    assert "attributes" in yaml.safe_load(drafted)
    target.write_text("mine")
    code, _, stderr = run_cli("init-spec", str(tmp_path / "survey.parquet"), "--out", str(target), "--force")
    assert code == 0 and target.read_text() == drafted, stderr
    assert len(deprecation_lines(stderr)) == 1


def test_template_items_overwrite_and_old_force(tmp_path: Path) -> None:
    target = tmp_path / "items.jsonl"
    target.write_text("mine")
    code, _, stderr = run_cli("template-items", "gss_values", "--out", str(target))
    assert code == 2 and "pass --overwrite" in stderr and target.read_text() == "mine"
    for flag, warned in (("--overwrite", 0), ("--force", 1)):
        target.write_text("mine")
        code, _, stderr = run_cli("template-items", "gss_values", "--out", str(target), flag)
        assert code == 0, stderr
        assert target.read_text() != "mine" and len(deprecation_lines(stderr)) == warned


@pytest.mark.parametrize(
    "args",
    [["annotate", "--out", "TARGET"], ["fidelity", "--json", "TARGET"]],
    ids=["annotate", "fidelity"],
)
def test_no_force_is_taken_as_no_overwrite(tmp_path: Path, args: list[str]) -> None:
    # both refuse the existing file before any judge is asked (no request, no Prefect)
    target = tmp_path / "existing.out"
    target.write_text("mine")
    command = [str(target) if a == "TARGET" else a for a in args]
    code, _, stderr = run_cli(*command, "--no-force")
    assert code == 2 and "exists; pass --overwrite" in stderr and target.read_text() == "mine"
    (line,) = deprecation_lines(stderr)
    assert line.startswith("warning: --no-force ") and line.endswith("use --no-overwrite")


@pytest.mark.parametrize("command", ["init", "init-spec", "annotate", "template-items", "fidelity", "evaluate"])
def test_help_shows_overwrite_and_hides_force(command: str) -> None:
    code, stdout, stderr = run_cli(command, "--help")
    assert code == 0, stderr
    assert "--overwrite" in stdout and "--force" not in stdout


@pytest.mark.parametrize("command", [["init"], ["template-items", "gss_values"]], ids=["init", "template-items"])
def test_force_warns_even_with_nothing_to_replace(tmp_path: Path, command: list[str]) -> None:
    target = tmp_path / "new.out"
    code, _, stderr = run_cli(*command, "--out", str(target), "--force")
    assert code == 0 and target.is_file(), stderr
    (line,) = deprecation_lines(stderr)
    assert line.startswith("warning: --force ")
