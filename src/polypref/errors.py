"""Every error polypref raises on purpose lives here, so callers catch one family."""

from __future__ import annotations

from typing import Any


class PolyprefError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class ConfigError(PolyprefError):
    """A build config, override, population spec, survey table or item file is invalid.

    Raised before any expensive work starts; the message names the file, the field path and the reason.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid"] + [f"  {field or '<root>'}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))


class OutputError(PolyprefError):
    """The output directory cannot be used (it holds a different build, or is not a polypref build)."""


class SchemaViolation(PolyprefError):
    """A table about to be written does not match its JSON Schema in schemas/."""


class JudgeFatalError(PolyprefError):
    """The judge's setup is wrong (bad key, no access, unknown model or endpoint): every request would fail.

    The build stops at once: requests in flight are cancelled, no shard is retried, the CLI exits 2.
    """


class EndpointUnreachable(JudgeFatalError):
    """An endpoint cannot be reached at all (connection refused, unknown host, no answer in time), found by
    probing it before the first request (llms.probe): asking anyway would only retry for many minutes.

    Stops like any setup error, but the CLI exits 3, as for questions that got no answer: nothing in the config
    need be wrong, and the same command succeeds once the endpoint is up.
    """


class Interrupted(PolyprefError):
    """The user (SIGINT) or a scheduler (SIGTERM) asked the build to stop; finished work is saved."""

    def __init__(self, signal_name: str = "SIGINT"):
        self.signal_name = signal_name
        super().__init__(
            f"stopped by {signal_name}; finished micro-batches are saved, rerun the same command to resume"
        )


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message (libraries append tracebacks and hints), or its type."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def http_status(error: Any) -> int | None:
    """The HTTP status of an error that carries a response (huggingface_hub's and httpx's do), else None."""
    return getattr(getattr(error, "response", None), "status_code", None)


def validation_problem(err: Any) -> tuple[str, str]:
    """One pydantic error of a user's file as (field, reason) for a ConfigError.

    Keys come from the user's file and may hold control characters: those are printed quoted. A check that
    names its own field first ("templates.2: needs {group}") is reported under that field.
    """
    field = ".".join(str(p) if str(p).isprintable() else repr(str(p)) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if ": " in message:
        named, rest = message.split(": ", 1)
        if not field or named.startswith(f"{field}."):
            return named, rest
    return field, message


def retry_unless_polypref_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn for our tasks. A PolyprefError says retrying cannot help: the judge's setup
    is wrong (a 401 would be sent again by every request of every retry) or a stop was asked for. Anything else
    may be passing, and is retried.

    A plain function on purpose: Prefect calls only functions and coroutine functions, and treats any other
    callable as "never retry" (prefect/task_engine.py, SyncTaskRunEngine.can_retry). Here, not in flows/, so
    that tasks shipped to other processes (Ray) find it by import.
    """
    return not isinstance(state.data, PolyprefError)  # can_retry puts the exception in the Failed state's data
