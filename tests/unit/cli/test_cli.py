"""The CLI's own error paths, as a user meets them: its exit status and its output (in this process; the
installed script and `python -m polypref` once each as real processes).

None of these start Prefect: every one ends before a build would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_polypref


def polypref(*args: str, cwd: Path):
    return run_cli(*args, cwd=cwd)


@pytest.mark.process
@pytest.mark.parametrize("script", [False, True], ids=["python-m", "script"])
def test_bare_command_prints_usage_and_what_is_missing(tmp_path: Path, script: bool) -> None:
    result = run_polypref(cwd=tmp_path, script=script)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Usage: polypref [OPTIONS] COMMAND" in result.stderr
    assert "Error: Missing command" in result.stderr.splitlines()[-1] and "build" in result.stderr


@pytest.mark.parametrize(
    ("args", "message", "usage"),
    [
        (["publish"], "No such command 'publish'", "Usage: polypref [OPTIONS] COMMAND"),
        (["build", "--bogus"], "No such option: --bogus", "Usage: polypref build [OPTIONS]"),
        (["validate", "--set"], "Error: Option '--set' requires an argument.", None),  # click prints no usage here
    ],
    ids=["unknown-command", "unknown-option", "missing-value"],
)
def test_usage_errors_print_usage_and_one_message(
    tmp_path: Path, args: list[str], message: str, usage: str | None
) -> None:
    result = polypref(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stderr.splitlines()[-1]  # the last line says what was wrong
    assert usage is None or usage in result.stderr
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_help_lists_the_commands_and_succeeds(tmp_path: Path) -> None:
    result = polypref("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("init", "validate", "build"):
        assert command in result.stdout


@pytest.mark.parametrize("name", ["[bold]x.yaml", "a[/b].yaml", "[link=x]c[/link].yaml"])
def test_errors_naming_a_file_print_its_name_as_it_is(tmp_path: Path, name: str) -> None:
    # a name that looks like console markup must neither crash the error printer nor be restyled by it
    result = polypref("validate", name, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert f"error: {name}: invalid" in result.stderr and "file not found" in result.stderr


def test_config_values_in_errors_print_as_they_are(tmp_path: Path) -> None:
    result = polypref("validate", "--set", "population.spec=[red]nowhere[/red]", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "[red]nowhere[/red]" in result.stderr


def test_init_reports_a_markup_like_path_as_it_is(tmp_path: Path) -> None:
    result = polypref("init", "--out", "a[/b].yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a[/b].yaml").is_file()
    assert "wrote a[/b].yaml" in result.stdout
    again = polypref("init", "--out", "a[/b].yaml", cwd=tmp_path)
    assert again.returncode == 2 and "error: a[/b].yaml exists; pass --overwrite to replace it" in again.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("taken/x.yaml", "a folder on its path is a file"),  # "taken" is a file
        ("folder", "is a folder"),
        ("/proc/polypref.yaml", "cannot write /proc/polypref.yaml"),
    ],
)
def test_init_where_no_file_can_go_says_why(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "taken").write_text("mine")
    (tmp_path / "folder").mkdir()
    done = polypref("init", "--out", target, "--overwrite", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert (tmp_path / "taken").read_text() == "mine" and not any((tmp_path / "folder").iterdir())
    assert not list(tmp_path.rglob(".tmp-*"))


def test_settings_given_on_the_command_line_are_blamed_on_it(tmp_path: Path) -> None:
    for args in (
        ["--set", "judge.backend=nosuch"],
        ["--set", "population.spec=ess9_gb_immigration", "--set", "items.source=ess_immigration"],
    ):
        done = polypref("validate", *args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("error: command line:"), done.stderr
        assert "default.yaml" not in done.stderr


PRELOADED = """
import sys
from polypref import judges
judges.preload(sys.argv[1])
print(" ".join(m for m in ("openai", "vllm") if m in sys.modules))
"""


@pytest.mark.process  # a fresh interpreter: what it has imported
@pytest.mark.parametrize(("backend", "loaded"), [("openai", "openai"), ("simulated", ""), ("vllm", "")])
def test_preload_imports_an_api_client_ahead_and_never_an_engine(backend: str, loaded: str) -> None:
    """The CLI preloads the judge's client while Prefect's server boots; an engine (vLLM) loads in the flow."""
    done = subprocess.run([sys.executable, "-c", PRELOADED, backend], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == loaded
