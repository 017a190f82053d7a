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
all; ``main`` is the `polypref` script.
"""

from __future__ import annotations

from rich.text import Text

# isort: off
# The order of these imports is the order `polypref --help` lists the commands in.
from polypref.cli import setup, annotate, publish, build, inspect, serve  # noqa: F401  (they register commands)

# isort: on
from polypref.cli.common import EXIT_ERROR, EXIT_GATE, EXIT_UNANSWERED, app, err
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


def main(argv: list[str] | None = None) -> None:
    """The `polypref` script. Typer runs standalone, so usage errors print usage and exit 2 as in any CLI;
    our own errors print one message, never a traceback."""
    try:
        app(args=argv, prog_name="polypref")
    except PolyprefError as e:
        _print_error(str(e))
        raise SystemExit(_exit_status(e)) from None
