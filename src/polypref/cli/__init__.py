"""polypref command line: init | init-spec | validate | annotate | template-items | fidelity | build | push | status |
evaluate | serve.

Exit statuses: 0 done; 2 a usage, config, output or judge-setup error (the message says which); 3 built, but
some judgments got no answer, or responses could not be generated because the endpoint never answered (rerun to
ask again for exactly those); 4 the fidelity gate stopped the build before judging (the personas' survey answers
were too far from the survey's); 130 stopped by SIGINT, 143 by SIGTERM
(saved work is kept; rerun the same command to resume).

One module per group of commands, each registering its commands on the one Typer ``app`` (cli/common.py, with
what every command shares): setup (init, init-spec, validate), annotate (annotate, template-items), publish
(push), build (build, fidelity), inspect (status, evaluate), serve (serve). Importing this package registers them
all; ``main`` is the `polypref` script, which also takes, until 0.3, the spellings of before 0.2 that no option of
Typer's can take (`status FOLDER --json`, a flag then; the others are hidden options of their commands).
"""

from __future__ import annotations

import sys

from rich.text import Text

# isort: off
# The order of these imports is the order `polypref --help` lists the commands in.
from polypref.cli import setup, annotate, publish, build, inspect, serve  # noqa: F401  (they register commands)

# isort: on
from polypref.cli.common import EXIT_ERROR, EXIT_GATE, EXIT_UNANSWERED, app, deprecated, err
from polypref.errors import EndpointUnreachable, PolyprefError
from polypref.safety.secrets import scrub

__all__ = ["app", "main"]


def _only_unanswered(error: PolyprefError) -> bool:
    """Generation stopped only because the endpoint never answered: like unanswered judgments, a rerun helps."""
    from polypref.generation import GenerationError

    return isinstance(error, GenerationError) and set(error.failed) == {"no_answer"}


def _exit_status(error: PolyprefError) -> int:
    from polypref.pipeline.fidelity import FidelityGateError

    if isinstance(error, FidelityGateError):
        return EXIT_GATE
    if isinstance(error, EndpointUnreachable):  # like unanswered requests: nothing wrong with the inputs
        return EXIT_UNANSWERED
    return EXIT_UNANSWERED if _only_unanswered(error) else EXIT_ERROR


def _print_error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", scrub(message)))  # a --set value may hold a credential


def _old_status_json(argv: list[str]) -> list[str]:
    """``argv`` with the old `status FOLDER --json` (a flag, before 0.2: print the figures) as the new
    `status FOLDER --json -`: a --json with no value after it (the last word, or another option next), or one
    whose value is the only word that can be the folder (`status --json FOLDER`)."""
    if argv[:1] != ["status"] or "--json" not in argv:
        return argv
    at = argv.index("--json")
    end = argv.index("--") if "--" in argv else len(argv)
    value = argv[at + 1] if at + 1 < end else None
    if value == "-" or at > end:  # the new spelling, or a word after `--` (a folder named so)
        return argv
    if value is not None and not value.startswith("-"):  # --json PATH, unless PATH is the only folder given
        words = [a for i, a in enumerate(argv[1:end], 1) if i != at + 1 and not a.startswith("-")]
        if words or argv[end + 1 :]:
            return argv
    deprecated("`polypref status FOLDER --json` (no path)", "`polypref status FOLDER --json -`")
    return [*argv[: at + 1], "-", *argv[at + 1 :]]


def main(argv: list[str] | None = None) -> None:
    """The `polypref` script. Typer runs standalone, so usage errors print usage and exit 2 as in any CLI;
    our own errors print one message, never a traceback."""
    args = _old_status_json(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="polypref")
    except PolyprefError as e:
        _print_error(str(e))
        raise SystemExit(_exit_status(e)) from None
