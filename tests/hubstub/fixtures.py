"""pytest fixtures for the Hub stub: one stub per test session, and a per-test client environment.

Use them with ``pytest_plugins = ("tests.hubstub.fixtures",)`` in a test module or in the root conftest.py
(a plugin is registered once, so every module shares the one session stub).

* ``hub_stub`` (session): a running ``HubStub``; seed it with repo names unique to your test.
* ``hub`` (function): points huggingface_hub and datasets at the stub with an empty cache of their own, no
  token and offline mode off, and clears the request log. ``hub.offline()`` / ``hub.token(...)`` switch those.

huggingface_hub and datasets read ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache folders once, at import, so
setting the environment is not enough inside a test process: ``patch_hub_env`` also patches their constants.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hubstub import HubStub
from tests.hubstub.app import PAGE_SIZE


@dataclass
class HubEnv:
    """The client side of a test: where its caches are, and switches for offline mode and the token."""

    stub: HubStub
    url: str
    home: Path  # HF_HOME
    monkeypatch: pytest.MonkeyPatch

    @property
    def hub_cache(self) -> Path:
        return self.home / "hub"

    @property
    def datasets_cache(self) -> Path:
        return self.home / "datasets"

    def offline(self, on: bool = True) -> None:
        patch_hub_env(self.monkeypatch, self.url, self.home, offline=on)

    def token(self, value: str | None) -> None:
        if value is None:
            self.monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("HF_TOKEN", value)


def patch_hub_env(mp: pytest.MonkeyPatch, url: str, home: Path, offline: bool = False) -> None:
    """Environment and import-time constants of huggingface_hub (and datasets, if imported) for ``url``."""
    from huggingface_hub import constants

    values = {
        "HF_ENDPOINT": url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_DATASETS_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in values.items():
        mp.setenv(key, value)
    mp.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    mp.setattr(constants, "ENDPOINT", url)
    mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(constants, "HF_HUB_OFFLINE", offline)
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_XET_CACHE", "HF_ASSETS_CACHE", "HF_TOKEN_PATH"):
        mp.setattr(constants, name, values[name])
    mp.setattr(constants, "HUGGINGFACE_HUB_CACHE", values["HF_HUB_CACHE"])
    mp.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    # huggingface_hub's module-level functions (upload_file, which DatasetCard.push_to_hub calls) go through an
    # HfApi made at import, with the endpoint of that moment: whichever test imported it first decided
    from huggingface_hub import hf_api

    mp.setattr(hf_api.api, "endpoint", url)
    if "datasets.config" in sys.modules:
        config = sys.modules["datasets.config"]
        mp.setattr(config, "HF_ENDPOINT", url)
        mp.setattr(config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
        mp.setattr(config, "HF_HUB_OFFLINE", offline)
        mp.setattr(config, "HF_DATASETS_OFFLINE", offline)
        mp.setattr(config, "USE_PARQUET_EXPORT", False)  # else it asks datasets-server.huggingface.co
        mp.setattr(config, "HF_CACHE_HOME", str(home))
        mp.setattr(config, "HF_DATASETS_CACHE", home / "datasets")
        mp.setattr(config, "DOWNLOADED_DATASETS_PATH", home / "datasets" / "downloads")
        mp.setattr(config, "EXTRACTED_DATASETS_PATH", home / "datasets" / "downloads" / "extracted")
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()  # fsspec keeps instances (and their listings) across tests


@pytest.fixture(scope="session")
def hub_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStub]:
    with HubStub(tmp_path_factory.mktemp("hubstub")) as stub:
        yield stub


@pytest.fixture
def hub(hub_stub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubEnv:
    assert hub_stub.url is not None
    hub_stub.log.clear()
    hub_stub.clear_faults()
    hub_stub.page_size = PAGE_SIZE
    env = HubEnv(hub_stub, hub_stub.url, tmp_path / "hf-home", monkeypatch)
    patch_hub_env(monkeypatch, env.url, env.home)
    env.token(None)
    return env
