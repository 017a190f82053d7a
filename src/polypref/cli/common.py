"""What every command shares: the one Typer ``app`` the commands register on, its root callback, the consoles,
the exit statuses, the option types, loading the config, checking an output file before any work, writing
figures as JSON and the deprecation message of an old spelling.

The spellings every command follows: a command that reads a build folder takes it as its first argument; ``--out``
names what the command writes (one kind per command: a file, or for build and serve the build folder);
``--json PATH`` writes the figures as JSON (``-``: print only them); ``--overwrite`` replaces what is there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from polypref.config import BuildConfig, load_config
from polypref.errors import PolyprefError
from polypref.files import write_bytes

EXIT_ERROR = 2
EXIT_UNANSWERED = 3
EXIT_GATE = 4

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain usage errors: "Usage: ... / Error: <one line>"; Rich's error panel wraps and truncates messages
    rich_markup_mode=None,
    help="Build synthetic persona preference datasets.",
)
# Markup off: messages carry user paths, and a file named "[bold]x.yaml" or "a[/b].yaml" must print as it is.
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
out = Console(markup=False, highlight=False, soft_wrap=True)

ConfigArg = Annotated[Path | None, typer.Argument(help="Build config YAML (default: the shipped default)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set population.size=500")]
OutDirOpt = Annotated[
    Path, typer.Option("--out", help="Output folder (Hub layout); one that holds a build resumes, grows or is rebuilt")
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="If another polypref command is writing the folder, wait for it to end")
]
AddPersonasOpt = Annotated[
    int, typer.Option("--add-personas", help="Grow the population by this many past what --out holds", min=0)
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace an existing file")]
JsonOverwriteOpt = Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace an existing --json file")]
# the old spelling of --overwrite (before 0.2.0, every command but build): taken, with a message, until 0.3
ForceOpt = Annotated[bool | None, typer.Option("--force/--no-force", hidden=True, help="Deprecated: --overwrite")]
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="Also write the figures to this file as JSON (-: print only the JSON)")
]
REMOVED_IN = "0.3"  # the release that drops the old spellings 0.2 still takes


def deprecated(old: str, new: str) -> None:
    """Say, on stderr and in one line, that ``old`` still works but will not for long, and what to write."""
    err.print(f"warning: {old} is deprecated and will be removed in {REMOVED_IN}; use {new}")


def overwriting(overwrite: bool, force: bool | None) -> bool:
    """--overwrite, or its old spelling --force/--no-force if given (with a deprecation message)."""
    if force is None:
        return overwrite
    deprecated(*(("--force", "--overwrite") if force else ("--no-force", "--no-overwrite")))
    return overwrite or force


def is_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def check_json_path(path: Path | None, overwrite: bool, example: str) -> None:
    """check_new_file for a --json PATH given (``-``, stdout, needs no check)."""
    if path is not None and not is_stdout(path):
        check_new_file(path, overwrite, example)


def write_json(figures: object, path: Path) -> None:
    """``figures`` as JSON: to stdout for ``-`` (alone, for a script to read), else to the file ``path``."""
    if is_stdout(path):
        typer.echo(json.dumps(figures, indent=2))
        return
    write_bytes((json.dumps(figures, indent=2, ensure_ascii=False) + "\n").encode(), path)
    out.print(f"wrote {path}")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    # A bare `polypref` is a usage error like any other: usage, one line saying what is missing, exit 2.
    if ctx.invoked_subcommand is None:
        ctx.fail(
            "Missing command: init (write a config), init-spec (draft a population spec from a survey file), "
            "validate (check a config), annotate (give open items topics and stances), template-items (make items "
            "from a spec), fidelity (score personas against the survey), build (make or grow the dataset), "
            "status (what a build folder holds), evaluate (its per-persona signal), push (publish it) or serve "
            "(build on a schedule)."
        )


def load_settings(config: Path | None, overrides: list[str] | None) -> tuple[BuildConfig, str]:
    """The config and where it came from (its file, else "command line"), for messages."""
    # with no config file, the packaged default is valid: anything wrong came from the command line
    source = str(config) if config else "command line"
    return load_config(config, overrides or []), source


def check_new_file(path: Path, overwrite: bool, example: str) -> None:
    """Refuse, before any work, an output file that is a folder, exists (unless --overwrite), is not a plain file
    (a device, a link: replacing it would replace the link or the device node, not write through it), or lies
    where nothing can be written."""
    if path.is_dir():
        raise PolyprefError(f"{path} is a folder; give the file's name, e.g. {path / example}")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PolyprefError(f"{path} is not a plain file (a link, a device ...); give another path")
    if path.exists() and not overwrite:
        raise PolyprefError(f"{path} exists; pass --overwrite to replace it")
    folder = path.absolute().parent
    while not folder.exists():  # the writer makes missing folders: the first that exists must take them
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise PolyprefError(f"{path}: cannot write in {folder}")
