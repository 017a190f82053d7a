"""One kept vLLM engine per process (llms.engines), with a stand-in for vllm.LLM: these rules need no model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest

from polypref.llms import engines


class Engine:
    """What llms.engines needs of vllm.LLM: its engine's shutdown."""

    loaded: ClassVar[list[Engine]] = []

    def __init__(self, name: str) -> None:
        self.name, self.down = name, False
        self.llm_engine = self
        self.engine_core = SimpleNamespace(resources=SimpleNamespace(engine_dead=False))  # vLLM's monitor's mark
        Engine.loaded.append(self)

    def shutdown(self) -> None:
        assert not self.down, f"{self.name} shut down twice"
        self.down = True


@pytest.fixture(autouse=True)
def nothing_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_kept", None)
    Engine.loaded = []


def test_equal_settings_share_one_engine_across_openings_and_closings() -> None:
    key = engines.settings_key("m", {"dtype": "float32", "seed": 0})
    first = engines.lease(key, lambda: Engine("a"))
    second = engines.lease(engines.settings_key("m", {"seed": 0, "dtype": "float32"}), lambda: Engine("b"))
    assert second is first and first.borrowers == 2
    first.release()
    second.release()
    third = engines.lease(key, lambda: Engine("c"))
    assert third.engine.name == "a" and [e.name for e in Engine.loaded] == ["a"] and not third.engine.down


def test_other_settings_replace_an_idle_engine_before_loading() -> None:
    first = engines.lease(engines.settings_key("m", {"seed": 0}), lambda: Engine("a"))
    first.release()

    def load() -> Engine:
        assert Engine.loaded[0].down, "two engines would hold the GPU at once"
        return Engine("b")

    second = engines.lease(engines.settings_key("m", {"seed": 1}), load)
    assert second.engine.name == "b" and second.kept


def test_an_engine_in_use_is_never_shut_down_under_its_borrower() -> None:
    first = engines.lease(engines.settings_key("m", {"seed": 0}), lambda: Engine("a"))
    other = engines.lease(engines.settings_key("n", {"seed": 0}), lambda: Engine("b"))
    assert not first.engine.down and not other.kept  # loaded beside it, not kept
    other.release()
    assert other.engine.down and not first.engine.down
    first.release()
    assert not first.engine.down  # kept for the next opening


def test_a_dead_engine_is_not_lent_again() -> None:
    key = engines.settings_key("m", {"seed": 0})
    first = engines.lease(key, lambda: Engine("a"))
    first.discard()
    first.release()
    again = engines.lease(key, lambda: Engine("b"))
    assert again.engine.name == "b"


def test_a_discarded_engine_is_shut_down_once_by_its_last_borrower() -> None:
    key = engines.settings_key("m", {"seed": 0})
    first = engines.lease(key, lambda: Engine("a"))
    second = engines.lease(key, lambda: Engine("b"))
    first.discard()  # the engine failed under one borrower's call
    first.release()
    assert not first.engine.down  # the other still holds it
    second.release()
    assert first.engine.down  # and Engine.shutdown refuses a second time


def test_an_engine_that_died_while_idle_is_not_lent_again() -> None:
    key = engines.settings_key("m", {"seed": 0})
    first = engines.lease(key, lambda: Engine("a"))
    first.release()
    first.engine.engine_core.resources.engine_dead = True  # Ctrl-C or the OOM killer reached its processes
    again = engines.lease(key, lambda: Engine("b"))
    assert again.engine.name == "b" and again.kept


def test_a_model_folder_is_keyed_by_its_real_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert engines.settings_key("model", {}) == engines.settings_key(str(tmp_path / "model"), {})
    assert engines.settings_key("org/name", {}) != engines.settings_key("org/other", {})  # a Hub id as it is
