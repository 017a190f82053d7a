"""Where shards are judged: in this process (local), by a Prefect work pool's workers, or on a Ray cluster; the
Prefect server a command-line run uses, and serving a build on a schedule."""

from __future__ import annotations

from pathlib import Path

from polypref.config import BuildConfig
from polypref.errors import ConfigError
from polypref.runners import serve, workpool


def check(config: BuildConfig, source: str) -> None:
    """What the configured runner needs, checked before any work: a server the pool's workers share, or
    prefect-ray. Every command that starts a build asks this before planning it."""
    if config.runner.kind == "workpool":
        workpool.check(source)
        serve.flow_parameters(config, Path("."), source, 0)  # the workers get the config as Prefect stores it
    elif config.runner.kind == "ray":
        try:
            import prefect_ray  # noqa: F401  (optional: the ray extra)
        except ImportError:
            raise ConfigError(source, [("runner.kind", "ray needs prefect-ray: pip install 'polypref[ray]'")]) from None
