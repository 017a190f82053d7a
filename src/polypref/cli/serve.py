"""serve: the build on a schedule, from this process (Prefect serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polypref.cli.common import AddPersonasOpt, ConfigArg, OutDirOpt, SetOpt, app, load_settings


@app.command()
def serve(
    config: ConfigArg = None,
    out_dir: OutDirOpt = Path("out"),
    set_: SetOpt = None,
    cron: Annotated[str, typer.Option(help="When to run (cron, UTC)")] = "0 3 * * *",
    interval: Annotated[
        float | None, typer.Option(help="Run every this many seconds instead of on the cron schedule", min=1)
    ] = None,
    add_personas: AddPersonasOpt = 0,
    name: Annotated[str, typer.Option(help="Deployment name")] = "polypref-refresh",
) -> None:
    """Run the build on a schedule from this process (Prefect serve; no separate server or worker). Each run adds
    what is new (items, --add-personas) as new shards, and pushes when the config names publish.repo."""
    from polypref.runners import serve as serving

    cfg, source = load_settings(config, set_)
    serving.serve(cfg, out_dir, source=source, cron=cron, interval=interval, add_personas=add_personas, name=name)
