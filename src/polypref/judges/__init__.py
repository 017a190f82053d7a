"""Judge registry: backend name -> implementation, imported lazily so heavy backends cost nothing unused."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from polypref.judges.base import VERDICT_COLUMNS, Judge, JudgeInfo, collect_verdicts

JUDGES: dict[str, str] = {
    "simulated": "polypref.judges.simulated:SimulatedJudge",
}


def make_judge(config: Any, seed: int) -> Judge:
    """Build the judge a config's ``judge`` section names."""
    module, _, name = JUDGES[config.backend].partition(":")
    return getattr(import_module(module), name)(config, seed)


__all__ = ["JUDGES", "VERDICT_COLUMNS", "Judge", "JudgeInfo", "collect_verdicts", "make_judge"]
