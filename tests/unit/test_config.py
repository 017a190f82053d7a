from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polypref.config import DEFAULT_CONFIG_PATH, BuildConfig, load_config
from polypref.errors import ConfigError
from tests.conftest import CliResult, run_cli


def test_shipped_default_matches_model_defaults():
    # the commented default.yaml is what `polypref init` writes; it must not drift from the code
    assert load_config(None) == BuildConfig()
    assert load_config(DEFAULT_CONFIG_PATH) == BuildConfig()


def test_overrides_are_parsed_and_validated():
    config = load_config(
        None,
        [
            "population.size=17",
            "judge.samples=3",
            "filters.swap_consistency=false",
            "items.topics=[natfare, natsoc]",
        ],
    )
    assert config.population.size == 17
    assert config.judge.samples == 3
    assert config.filters.swap_consistency is False
    assert config.items.topics == ["natfare", "natsoc"]


def _error(tmp_path: Path, text: str | None, overrides: tuple[str, ...] = ()) -> ConfigError:
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return info.value


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    e = _error(tmp_path, "population:\n  size: [1, 2\n")
    assert e.source.endswith("c.yaml")
    assert "YAML syntax error: line" in str(e)


def test_unknown_key_lists_allowed_keys(tmp_path):
    e = _error(tmp_path, "population:\n  sise: 10\n")
    assert e.problems[0][0] == "population.sise"
    assert "unknown key" in e.problems[0][1] and "size" in e.problems[0][1]


def test_wrong_type(tmp_path):
    e = _error(tmp_path, "population:\n  size: many\n")
    assert e.problems[0][0] == "population.size"
    assert "'many'" in e.problems[0][1]


def test_out_of_range(tmp_path):
    e = _error(tmp_path, "filters:\n  min_confidence: 1.5\n")
    assert e.problems == [("filters.min_confidence", e.problems[0][1])]
    assert "less than or equal to 1" in e.problems[0][1]


def test_missing_file(tmp_path):
    e = _error(tmp_path, None)
    assert e.problems == [("", f"file not found: {tmp_path / 'c.yaml'}")]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("seed: 3\nseed: 4\n", "duplicate key 'seed'"),  # the first would be lost without a word
        ("seed: 2020-13-45\n", "YAML value cannot be read"),
        ("seed: 1" + "0" * 5000 + "\n", "YAML value cannot be read"),
        ("seed: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
    ],
)
def test_yaml_that_python_cannot_hold_is_named(tmp_path, text, reason):
    e = _error(tmp_path, text)
    assert e.source.endswith("c.yaml") and reason in str(e)
    assert "set_int_max_str_digits" not in str(e)


def test_non_utf8_and_folder_configs_are_named(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("population: {spec: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.source == str(bad) and "not UTF-8" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.source == str(tmp_path) and "folder" in str(info.value)


def test_not_a_mapping(tmp_path):
    assert "expected a mapping" in str(_error(tmp_path, "- a\n- b\n"))


def test_bad_override_is_blamed_on_the_override(tmp_path):
    e = _error(tmp_path, "seed: 1\n", ("judge.samples=0",))
    assert e.problems[0][0] == "judge.samples"
    assert "--set judge.samples=0" in e.problems[0][1]
    assert e.source == "command line"  # not the config file, which is fine
    assert "expected key.path=value" in str(_error(tmp_path, "seed: 1\n", ("judge.samples",)))
    assert "unknown key" in str(_error(tmp_path, "seed: 1\n", ("judge.sample=2",)))
    unreadable = _error(tmp_path, "seed: 1\n", ("seed=2020-13-45",))
    assert unreadable.source == "command line" and unreadable.problems[0][0] == "--set seed=2020-13-45"
    backend = _error(tmp_path, "seed: 1\n", ("judge.backend=nosuch",))
    assert backend.source == "command line" and "[from --set judge.backend=nosuch]" in backend.problems[0][1]


def test_a_sections_own_check_failing_on_an_override_is_blamed_on_the_override(tmp_path):
    # a check of a whole section names the section, not the key; the --set inside it is what broke it
    e = _error(tmp_path, "seed: 1\n", ("runner.gpus_per_worker=1",))
    assert e.source == "command line"
    assert e.problems[0] == (
        "runner",
        "gpus_per_worker is for kind: ray (a work pool's workers are pinned by their own CUDA_VISIBLE_DEVICES) "
        "[from --set runner.gpus_per_worker=1]",
    )
    in_file = _error(tmp_path, "runner:\n  gpus_per_worker: 1\n")
    assert in_file.source != "command line" and not in_file.problems[0][1].startswith("Value error")


def test_unknown_backend_is_rejected(tmp_path):
    e = _error(tmp_path, "judge:\n  backend: gpt\n")
    assert e.problems[0][0] == "judge.backend"


def _cli(*args: str, cwd: Path) -> CliResult:
    return run_cli(*args, cwd=cwd)


@pytest.mark.parametrize(
    ("text", "overrides", "field"),
    [
        ("population: {size: [1, 2\n", (), "YAML syntax error"),
        ("population: {sise: 10}\n", (), "population.sise"),
        ("population: {size: many}\n", (), "population.size"),
        ("judge: {samples: 0}\n", (), "judge.samples"),
        ("seed: 1\n", ("output.workers=-1",), "output.workers"),
        ("population: {spec: nowhere}\n", (), "population spec not found"),
        ("items: {source: missing.jsonl}\n", (), "items file not found"),
        (None, (), "file not found"),
    ],
)
def test_cli_rejects_bad_config_before_any_work(tmp_path, text, overrides, field):
    config = tmp_path / "bad.yaml"
    if text is not None:
        config.write_text(text)
    out = tmp_path / "out"
    result = _cli("build", str(config), "--out", str(out), *(f"--set={o}" for o in overrides), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    message = result.stderr
    assert field in message
    assert "Traceback" not in message + result.stdout
    assert not out.exists()


def test_cli_reports_bad_spec_with_its_path_and_field(tiny, tmp_path):
    spec = yaml.safe_load(tiny["spec"].read_text())
    spec["attributes"]["region"]["column"] = "regio"
    tiny["spec"].write_text(yaml.safe_dump(spec))
    result = _cli(
        "validate",
        "--set",
        f"population.spec={tiny['spec']}",
        "--set",
        f"items.source={tiny['items']}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert str(tiny["spec"]) in result.stderr
    assert "attributes.region.column" in result.stderr and "'regio'" in result.stderr


def test_init_writes_the_commented_default(tmp_path):
    target = tmp_path / "conf" / "build.yaml"
    result = _cli("init", "--out", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text().count("#") > 20
    assert load_config(target) == BuildConfig()
    assert yaml.safe_load(target.read_text())["population"]["spec"] == "gss_spending"
    again = _cli("init", "--out", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr


@pytest.mark.parametrize("name", ["vllm_gpu.yaml", "openai.yaml", "vllm_fleet.yaml"])
def test_shipped_llm_example_configs_are_valid(name):
    config = load_config(DEFAULT_CONFIG_PATH.parent / name)
    assert config.judge.backend in ("vllm", "openai")


def test_the_api_key_is_read_from_the_environment_and_never_kept(monkeypatch, tmp_path):
    from polypref import pipeline
    from polypref.judges import make_judge

    config = load_config(DEFAULT_CONFIG_PATH.parent / "openai.yaml", ["population.size=2"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:  # checked before any work, naming the variable
        pipeline.plan(config, tmp_path)
    assert info.value.problems[0][0] == "judge.api_key_env" and "OPENAI_API_KEY" in info.value.problems[0][1]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example-4f1d")
    assert pipeline.plan(config, tmp_path).num_units > 0
    judge = make_judge(config.judge, config.seed)
    try:
        assert judge.llm._api_key == "sk-example-4f1d"  # the key the judge sends is the environment's
        assert "sk-example-4f1d" not in repr(judge.info) + config.model_dump_json()
    finally:
        judge.close()


def test_cli_switches_the_default_config_to_an_llm_backend():
    config = load_config(None, ["judge.backend=vllm", "judge.model=/models/x"])
    assert config.judge.backend == "vllm" and config.judge.model == "/models/x"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["judge.backend=openai"])
    e = info.value
    assert e.problems[0][0] == "judge.model" and "Field required" in e.problems[0][1]
