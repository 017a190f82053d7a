"""Judge registry: backend name -> implementation, imported lazily so heavy backends cost nothing unused."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from polypref.judges.base import VERDICT_COLUMNS, Judge, JudgeInfo, collect_verdicts
from polypref.llms import LLMS

# every transport of llms.LLMS judges through the one LLM judge, which renders, asks it and parses
JUDGES: dict[str, str] = {
    "simulated": "polypref.judges.simulated:SimulatedJudge",
    **dict.fromkeys(LLMS, "polypref.judges.llm:LLMJudge"),
}

# what a backend imports on its first request (`import openai`: ~0.6 s); vLLM's engine loads in the flow, where the
# GPU it runs on is chosen
PRELOADS: dict[str, tuple[str, ...]] = {"openai": ("polypref.llms.openai", "openai")}


def preload(backend: str) -> None:
    """Import what ``backend`` needs before its first request, where the caller waits anyway (the CLI, for
    Prefect's server to boot), instead of after the flow has started."""
    for module in PRELOADS.get(backend, ()):
        import_module(module)


def make_judge(config: Any, seed: int, workdir: Path | None = None) -> Judge:
    """Build the judge a config's ``judge`` section names; ``workdir`` keeps state a judge must resume from."""
    module, _, name = JUDGES[config.backend].partition(":")
    return getattr(import_module(module), name)(config, seed, workdir)


__all__ = ["JUDGES", "VERDICT_COLUMNS", "Judge", "JudgeInfo", "collect_verdicts", "make_judge", "preload"]
