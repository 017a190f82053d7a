"""Transport registry: backend name -> the class that turns chat requests into completions, imported lazily so
heavy backends cost nothing unused. Judges, generation, annotation and the fidelity check all open theirs here.

Adding a backend is one module (its config model and transport class, with ``generate``, ``close`` and
``environment``) and one line in ``LLMS``.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from polypref.llms.base import LLM, Completion, LLMJudgeConfig, Request
from polypref.safety.secrets import install_log_redaction

LLMS: dict[str, str] = {
    "vllm": "polypref.llms.vllm:VllmLLM",
    "openai": "polypref.llms.openai:OpenAILLM",
}


def _transport(backend: str) -> Any:
    module, _, name = LLMS[backend].partition(":")
    return getattr(import_module(module), name)


def open(config: Any, seed: int, workdir: Path | None = None, section: str = "judge", **options: Any) -> LLM:
    """The transport ``config.backend`` names, ready to ``generate``; the caller closes it. ``workdir`` keeps
    what it must resume from (pending Batch API batches); ``section`` is the config section its messages name."""
    install_log_redaction()  # servers echo keys and URLs in errors; libraries log request URLs
    return _transport(config.backend)(config, seed, workdir, section=section, **options)


def environment(config: Any, section: str = "judge") -> list[tuple[str, str]]:
    """(field, reason) for each thing the backend needs from this machine and lacks (an engine install, a key in
    the environment), so a command can refuse before any work rather than fail mid-run."""
    return _transport(config.backend).environment(config, section)


__all__ = ["LLM", "LLMS", "Completion", "LLMJudgeConfig", "Request", "environment", "open"]
