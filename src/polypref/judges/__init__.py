"""Judge registry: backend name -> implementation, imported lazily so heavy backends cost nothing unused."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from polypref.judges.base import VERDICT_COLUMNS, Judge, JudgeInfo, collect_verdicts

JUDGES: dict[str, str] = {
    "simulated": "polypref.judges.simulated:SimulatedJudge",
    "vllm": "polypref.judges.vllm:VllmJudge",
    "openai": "polypref.judges.openai:OpenAIJudge",
}


def make_judge(config: Any, seed: int, workdir: Path | None = None) -> Judge:
    """Build the judge a config's ``judge`` section names; ``workdir`` keeps state a judge must resume from."""
    module, _, name = JUDGES[config.backend].partition(":")
    return getattr(import_module(module), name)(config, seed, workdir)


__all__ = ["JUDGES", "VERDICT_COLUMNS", "Judge", "JudgeInfo", "collect_verdicts", "make_judge"]
