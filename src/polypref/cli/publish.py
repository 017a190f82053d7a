"""push: a finished build folder to a Hub dataset repo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polypref.cli.common import WaitOpt, app, out


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="A finished build folder")],
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo, ORG/NAME (created if missing)")],
    private: Annotated[bool, typer.Option(help="Create the repo private")] = False,
    revision: Annotated[str, typer.Option(help="Branch to push to")] = "main",
    wait: WaitOpt = False,
) -> None:
    """Upload the build's card and data to a Hub dataset repo (HF_TOKEN from the environment): only files the
    Hub lacks, in few commits, tagged v1, v2, ...; an unchanged folder makes no commit. Only a whole, finished
    build is pushed (every shard as it was written)."""
    from polypref.hub import publish

    result = publish.push(folder, repo, private=private, revision=revision, wait=wait)
    for line in publish.iter_summary(result):
        out.print(line)
