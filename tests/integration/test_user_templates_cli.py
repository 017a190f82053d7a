"""`polypref validate` on the user's templates: a folder (judge.templates) or a spec's portrayal file that cannot
be used stops with exit status 2 and a message naming the config or spec, the field, the file and the reason,
never a traceback; a usable one validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli, spec_dict

pytestmark = pytest.mark.integration

LLM_JUDGE = ["judge.backend=openai", "judge.model=m", "judge.api_key_env=null", "judge.base_url=http://127.0.0.1:9/v1"]


def _validate(config: Path, *overrides: str) -> tuple[int, str]:
    code, _, err = run_cli("validate", str(config), *[a for o in overrides for a in ("--set", o)])
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("judge_pairwise.j2", "{{ first }}\n{% for %}\n", ["judge_pairwise.j2", "line 2: syntax error"]),
        ("judge_system.j2", "{{ persona }} {{ person }}", ["judge_system.j2", "['person']", "'persona'"]),
        ("judge_pairwse.j2", "{{ first }}", ["judge_pairwse.j2", "judge_pairwise.j2"]),
    ],
    ids=["syntax-error", "unknown-variable", "unknown-file"],
)
def test_an_unusable_template_folder_exits_2_naming_the_file(tiny_config, tmp_path, name, text, named):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / name).write_text(text)
    raw = yaml.safe_load(tiny_config.read_text())
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({**raw, "judge": {"backend": "openai", "model": "m", "templates": "prompts"}}))
    code, err = _validate(config, *LLM_JUDGE)
    assert code == 2, err
    assert f"{config}: invalid" in err and "judge.templates:" in err
    assert all(n in err for n in named), err


def test_a_usable_folder_and_spec_portrayal_validate(tiny, tiny_config, tmp_path, monkeypatch):
    """--set judge.templates is relative to the working directory; a spec's portrayal to the spec."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "judge_system.j2").write_text("Be {{ persona }}.")
    (tiny["dir"] / "who.j2").write_text("From the {{ a.region }}.")
    tiny["spec"].write_text(yaml.safe_dump(spec_dict(portrayal="who.j2")))
    code, err = _validate(tiny_config, *LLM_JUDGE, "judge.templates=mine")
    assert code == 0, err

    (tiny["dir"] / "who.j2").write_text("From the {{ a.region }} {{ b }}.")
    code, err = _validate(tiny_config, *LLM_JUDGE, "judge.templates=mine")
    assert code == 2 and f"{tiny['spec']}: invalid" in err and "portrayal:" in err and "['b']" in err, err
