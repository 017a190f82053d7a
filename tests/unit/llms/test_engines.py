"""One kept vLLM engine per process (llms.engines), with a stand-in for vllm.LLM: these rules need no model."""

from __future__ import annotations

from typing import ClassVar

import pytest

from polypref.llms import engines


class Engine:
    """What llms.engines needs of vllm.LLM: its engine's shutdown."""

    loaded: ClassVar[list[Engine]] = []

    def __init__(self, name: str) -> None:
        self.name, self.down = name, False
        self.llm_engine = self
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
