"""What a runner needs, checked before any work (every command that starts a build asks ``check_runner`` before
planning it), and the config as a work pool's or a served deployment's runs get it. Light on purpose: the CLI
imports it at start-up."""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Any

from polypref.config import BuildConfig
from polypref.errors import ConfigError
from polypref.runners import RUNNERS


def check_runner(config: BuildConfig, source: str) -> None:
    """What the config's runner needs (its line in ``RUNNERS``): its optional packages, and for workers that share
    the head's Prefect server, a server to share (and a config Prefect stores whole)."""
    kind = config.runner.kind
    runner = RUNNERS[kind]
    for package, install in runner.packages.items():
        try:
            import_module(package)  # optional: an extra of polypref's
        except ImportError:
            raise ConfigError(source, [("runner.kind", f"{kind} needs {install}")]) from None
    if runner.shared_server:
        _check_shared_server(kind, source)
        flow_parameters(config, Path("."), source, 0)  # the workers get the config as Prefect stores it


def _check_shared_server(kind: str, source: str) -> None:
    """Before any work: the workers must reach the head's Prefect server, so it cannot be an ephemeral one."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            source,
            [
                (
                    "runner.kind",
                    f"{kind} needs a Prefect server its workers share: start one (prefect server start) and set "
                    "PREFECT_API_URL here and on every worker (see docs/scaling.md)",
                )
            ],
        )


def flow_parameters(config: BuildConfig, out: Path, source: str, add_personas: int) -> dict[str, Any]:
    """The deployment's parameters, as Prefect stores them (JSON); a config that JSON would change is refused."""
    dumped = config.model_dump(mode="json")
    lost = _differences(config.model_dump(), BuildConfig.model_validate(dumped).model_dump())
    if lost:
        reason = (
            "Prefect's stored flow parameters leave this out (credentials, and provider settings not known to be "
            "harmless, never reach its database), so scheduled runs would judge without it; keep keys in the "
            "environment (judge.api_key_env), or run `polypref build` on a schedule of your own"
        )
        raise ConfigError(source, [(path, reason) for path in lost])
    return {"config": dumped, "out": str(out), "source": source, "add_personas": add_personas}


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    """The paths (a.b[0].c) where two JSON-like values differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after), key=str)
        return [d for k in keys for d in _differences(before.get(k), after.get(k), f"{path}.{k}" if path else k)]
    if isinstance(before, list | tuple) and isinstance(after, list | tuple) and len(before) == len(after):
        pairs = enumerate(zip(before, after, strict=True))
        return [d for i, (b, a) in pairs for d in _differences(b, a, f"{path}[{i}]")]
    return [] if before == after else [path or "<root>"]
