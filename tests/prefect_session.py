"""The test session's environment and its Prefect server, as a pytest plugin (conftest.py loads it).

Every process of a session (pytest alone, or each pytest-xdist worker) keeps Prefect's database, results and every
HF cache in temp folders of its own, set before any test module imports Prefect or datasets. One Prefect API server
per process serves every flow its tests run: started at collection when the process has a test that runs flows
(marked `integration` or `process`), whose modules run last, so the ~10 s its fresh database takes to migrate
overlap the other tests. Not one server for all workers: SQLite then refuses one worker's writes while the
other's hold the lock ("database is locked"). It is exported as PREFECT_API_URL from the start, so flows in test
processes and every `polypref` process they start use it rather than booting their own; a test about the CLI's
own server removes the variable (``own_prefect_server``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

TEST_ENV = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # a fresh DB takes ~12-29 s on 2 cores
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
STARTUP_S = 240
_state = pytest.StashKey[dict[str, Any]]()  # this process's temp home, saved environment and server


class SessionServer:
    """Prefect's API server, as Prefect starts its ephemeral one (prefect.server.api.server.SubprocessASGIServer),
    but with its output in a log file of the session's home: its background services' complaints (a work pool
    test's SQLite lock contention, say) are no test's output."""

    def __init__(self, home: Path) -> None:
        with socket.socket() as s:  # the address is known before it is up, so it can be exported at once
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.database = Path(os.environ["PREFECT_HOME"]) / "prefect.db"  # its home: this process's, at its start
        self.log = home / "prefect-server.log"
        spec = importlib.util.find_spec("prefect")  # not imported here: seconds the session need not wait for
        assert spec is not None and spec.origin is not None, "prefect is not installed"
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent)]
        command += ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-level", "error", "--lifespan", "on"]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-3000:]
                pytest.fail(f"the session's Prefect server exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the session's Prefect server at {self.api_url} did not answer within {STARTUP_S} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _runs_flows(items: list[pytest.Item]) -> bool:
    return any(item.get_closest_marker(m) for item in items for m in ("integration", "process"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    home = Path(tempfile.mkdtemp(prefix="polypref-tests-"))
    saved = {key: os.environ.get(key) for key in [*TEST_ENV, "PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"]}
    saved |= {key: os.environ.get(key) for key in ("HF_HOME", "HF_DATASETS_CACHE", "PREFECT_API_URL")}
    os.environ.update(TEST_ENV)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(home / "prefect-results")
    os.environ["HF_HOME"] = str(home / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(home / "hf-datasets")
    os.environ.pop("PREFECT_API_URL", None)  # a developer's own server never sees the tests' flows
    config.stash[_state] = {"home": home, "saved": saved, "server": None}


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: a server only where a selected test runs flows
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the server now, and run the modules that need it last (each module's tests stay together, in their
    order, so module fixtures are made once): its database migrates while the others run."""
    state = config.stash[_state]
    if state["server"] is None and _runs_flows(items):
        state["server"] = SessionServer(state["home"])
        # from the start: Prefect reads its settings once, at its first use, whichever test that is
        os.environ["PREFECT_API_URL"] = state["server"].api_url
    state["flow_modules"] = flows = {item.module for item in items if _runs_flows([item])}
    items.sort(key=lambda item: item.module in flows)  # stable


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_state, None)
    if state is None:
        return
    if state["server"] is not None:
        state["server"].stop()
    for key, value in state["saved"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(state["home"], ignore_errors=True)


def _session_server(config: pytest.Config) -> SessionServer:
    """This process's server, started at collection; a session that collected no flow test has none to give."""
    server = config.stash[_state]["server"]
    if server is None:
        pytest.fail("no test of this session is marked integration or process: mark the one that runs flows")
    return server


@pytest.fixture(scope="session")
def prefect_api(request: pytest.FixtureRequest) -> str:
    """The session's Prefect server's API, once it is up (exported by ``flows_reach_the_session_server``)."""
    server = _session_server(request.config)
    server.wait_until_up()
    return server.api_url


@pytest.fixture(scope="session")
def prefect_database(prefect_api: str, request: pytest.FixtureRequest) -> Path:
    """The session server's SQLite database, for tests that read what Prefect recorded of their runs."""
    return _session_server(request.config).database


@pytest.fixture(scope="module", autouse=True)
def flows_reach_the_session_server(request: pytest.FixtureRequest) -> None:
    """A module with a test that runs flows (marked `integration` or `process`) waits for the session's server
    before its first fixture: module fixtures that build included. The others run meanwhile."""
    if request.module in request.config.stash[_state].get("flow_modules", ()):
        request.getfixturevalue("prefect_api")


@pytest.fixture
def own_prefect_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test about the server a `polypref` command boots for itself: no session server named."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
