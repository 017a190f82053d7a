"""`polypref serve`: run the build flow on a schedule from one process, with no separate server or worker.

Prefect's Runner (what ``flow.serve`` runs) serves a deployment of flows/build.py:build_dataset and starts each of
its flow runs as a worker would, in a subprocess that loads the deployment's entrypoint. What Prefect 3.7.7 does
not do here, and this module does:

- **Schedule on the server we start.** polypref's server is Prefect's ephemeral one, and an ephemeral server runs
  no scheduler service (prefect/server/services/scheduler.py registers the scheduler without
  ``run_in_ephemeral``; the Runner itself warns "Cannot schedule flows on an ephemeral server"), so a served
  deployment there never gets a run. Even a full server cannot, beside SQLAlchemy 2.1: Prefect's bulk insert of
  scheduled runs fails ("Can't evaluate bulk DML statement; please supply a bulk_dml decorated function"), in the
  scheduler service and in ``POST /deployments/{id}/schedule`` alike. So ``Scheduler`` keeps one run of the
  deployment waiting, created through the API one at a time at the schedule's next time. One at a time also
  means that runs coming due while a long build is still going coalesce into one catch-up run instead of piling
  up. Against a server the user runs (``PREFECT_API_URL`` set), its scheduler creates the runs and we only serve.
- **Stop cleanly.** SIGINT and SIGTERM stop the runner, which cancels the run in flight as Prefect cancels runs
  (saved micro-batches are kept; the next run resumes), and the process exits 128 + the signal's number with no
  traceback. Flow runs do not get a terminal's Ctrl-C themselves (see ``_Served.run``).
- **Stay quiet,** as ``polypref build`` does: one line when serving starts, one per finished run.

Tied to the pinned Prefect version, like prefect_server: recheck when it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from rich.console import Console

from polypref import pipeline
from polypref.config import BuildConfig
from polypref.errors import PolyprefError, first_line
from polypref.runners import prefect_server, signals
from polypref.runners.check import check_runner, flow_parameters
from polypref.runners.schedules import FINISHED, Scheduler, describe_schedule, flow_runs, make_schedule
from polypref.safety.secrets import scrub

# A stop cancels the run in flight; Prefect gives a cancelled run 30 s to exit before it kills it, and then the
# runner and the server shut down. Past this, serve stops at once, as after a second signal.
STOP_TIMEOUT_S = 90


# as the CLI prints: markup off, since messages carry user paths
_out = Console(markup=False, highlight=False, soft_wrap=True)


_err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def serve(
    config: BuildConfig,
    out: Path,
    *,
    source: str,
    cron: str,
    interval: float | None,
    add_personas: int,
    name: str,
) -> None:
    """Serve flows/build.py:build_dataset as deployment ``name``, run on ``cron`` (UTC) or else every
    ``interval`` seconds into ``out``, each run adding ``add_personas`` personas; until SIGINT or SIGTERM.

    Everything is checked before Prefect starts (config and inputs, the output folder, the schedule): problems
    are PolyprefErrors, which the CLI prints (exit 2).

    The runs get the config as Prefect stores flow parameters, ``config.model_dump(mode="json")``, which by
    design leaves credentials out of ``judge.base_url`` and redacts free-form provider settings (secrets never
    reach Prefect's database). A config that this would change is refused here, since its scheduled runs would
    judge without the secret: keep keys in the environment (``judge.api_key_env``).
    """
    prefect_server.use_defaults()  # before Prefect is imported: it reads them once
    schedule = make_schedule(cron, interval)  # first: a mistyped option should not wait for the inputs' checks
    check_runner(config, source)
    plan = pipeline.plan(config, out, source)
    pipeline.check_output(plan)
    parameters = flow_parameters(config, out, source, add_personas)
    flow = prefect_server.load_flow("build.py:build_dataset")
    prefect_server.quiet_console_about_our_errors()

    server = prefect_server.PrefectServer()
    served = _Served(flow, name, schedule, parameters, out, describe_schedule(cron, interval))
    with signals.StopServing(server, served.stop, STOP_TIMEOUT_S) as stop:
        _start(server, served)
        if stop.name is None:
            signals.call_off_main_thread(served.run, name="polypref-serve", between=stop.give_up_if_late)
    if served.error is not None:
        raise _explained(served.error)
    if stop.name is not None:
        signals.write_stderr(f"stopped by {stop.name}: serving {name} ended\n")
        raise SystemExit(128 + signal.Signals[stop.name].value)


def _start(server: prefect_server.PrefectServer, served: _Served) -> None:
    """Start Prefect's server (ours, unless PREFECT_API_URL names one), which the runs must use too."""
    try:
        with _server_environment():
            server.start()
    except RuntimeError as e:
        if "ephemeral Prefect API server" not in str(e):
            raise
        raise PolyprefError(
            f"Prefect's local server did not start ({e}). If another Prefect version used this Prefect home, "
            "its database may be too new for this one: point PREFECT_HOME at a new folder, or set "
            "PREFECT_API_URL to a running Prefect server."
        ) from None
    if server.process is not None:
        # Our server: the runner, and the flow-run processes it starts (they inherit os.environ), must use
        # this one, not start servers of their own.
        served.api_url = prefect_server.own_server_url()
        os.environ["PREFECT_API_URL"] = served.api_url


@contextlib.contextmanager
def _server_environment() -> Iterator[None]:
    """Settings for the server subprocess alone, which copies os.environ when it starts.

    While serving, the server's background tasks meet SQLite locks ("database is locked": harmless, and done
    again later; PrefectHQ/prefect#18934), and its task queue (docket) logs each with a traceback through the
    root logger, which the build's PREFECT_LOGGING_SERVER_LEVEL does not reach. A user's own setting wins.
    """
    added = {"PREFECT_LOGGING_ROOT_LEVEL": "CRITICAL"}
    added = {key: value for key, value in added.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _explained(error: BaseException) -> BaseException:
    """The Prefect API failing (unreachable, or refusing a request) is a problem to report, not a crash."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(error, PrefectHTTPStatusError | httpx.HTTPError):
        return PolyprefError(f"serving stopped: the Prefect API failed: {scrub(first_line(error))}")
    return error


class _Served:
    """The runner and our scheduler, on an event loop of their own (a worker thread)."""

    def __init__(self, flow: Any, name: str, schedule: Any, parameters: dict[str, Any], out: Path, when: str):
        self.flow, self.name, self.schedule, self.parameters = flow, name, schedule, parameters
        self.out, self.when = out, when
        self.api_url: str | None = None  # set when the server is ours: then we create the runs
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: asyncio.Event | None = None
        self.stop_asked = False

    def run(self) -> None:
        # Flow runs are processes this thread starts, and they inherit its signal mask. With SIGINT blocked here,
        # a terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches only this process's main
        # thread, which stops the runner, and the runner cancels the run in flight the way Prefect cancels runs
        # (a flow run's own KeyboardInterrupt would end it with tracebacks).
        signals.leave_sigint_to_the_main_thread()
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # handed to the main thread, which raises it
            self.error = e

    def stop(self) -> None:
        """Called from the main thread (a signal handler)."""
        self.stop_asked = True
        if self.loop is not None and self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)

    async def _serve(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.runner import Runner
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        if self.stop_asked:
            return
        with temporary_settings(updates={PREFECT_API_URL: self.api_url} if self.api_url else {}):
            runner = Runner(name=self.name, pause_on_shutdown=True, limit=1)
            deployment = await self.flow.ato_deployment(
                name=self.name,
                schedules=[self.schedule],
                parameters=self.parameters,
                description=f"polypref serve: {self.when} into {self.out}",
            )
            # As Runner.add_flow does: clear a work pool that an earlier deployment of this name may have, so that
            # the runs are ours. Unlike add_flow, the runner is not given the flow object, so it starts each run
            # as a worker does (`python -m prefect.engine`, loading the entrypoint). add_flow's runs get the flow
            # cloudpickled by value, without the module globals that flows/build.py's postponed annotations name,
            # and then Prefect cannot validate the BuildConfig parameter.
            deployment.work_pool_name = None
            deployment.work_queue_name = None
            deployment_id = await runner.aadd_deployment(deployment)
            async with get_client() as client:
                scheduler = Scheduler(client, deployment_id, self.schedule) if self.api_url else None
                if scheduler is not None:
                    await scheduler.forget_waiting_runs()  # left by a serve that was killed
                starting = asyncio.create_task(runner.start())
                watching = asyncio.create_task(self._watch(client, deployment_id, scheduler))
                stop = asyncio.create_task(self.stopped.wait())
                done, _ = await asyncio.wait({starting, watching, stop}, return_when=asyncio.FIRST_COMPLETED)
                for task in (watching, stop):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if scheduler is not None:
                    with contextlib.suppress(Exception):  # best effort: the next serve forgets them too
                        await scheduler.forget_waiting_runs()
                if starting not in done:
                    while not runner.started and not starting.done():
                        await asyncio.sleep(0.1)
                    if runner.started:
                        await _let_finished_runs_exit(runner, client)
                        await runner.astop()  # cancels a run in flight
                await starting  # the runner's own errors surface here

    async def _watch(self, client: Any, deployment_id: UUID, scheduler: Scheduler | None) -> None:
        """Keep the next run waiting (on our server), say once what is served, then report each finished run."""
        from prefect.settings import get_current_settings

        tick = get_current_settings().runner.poll_frequency  # as often as the runner looks for runs
        started = datetime.datetime.now(datetime.UTC)
        reported: set[UUID] = set()
        announced = False
        while True:
            try:
                if scheduler is not None:
                    await scheduler.keep_one_waiting()
                if not announced:
                    waiting = await flow_runs(
                        client, deployment_id, ["SCHEDULED"], limit=1, sort="EXPECTED_START_TIME_ASC"
                    )
                    when = f", next run {_utc(waiting[0].expected_start_time)}" if waiting else ""
                    _out.print(f"serving {self.name}: {self.when} into {self.out}{when} (Ctrl-C to stop)")
                    announced = True
                latest = await flow_runs(
                    client, deployment_id, FINISHED, ended_after=started, limit=20, sort="END_TIME_DESC"
                )
                for run in reversed(latest):
                    if run.id not in reported:
                        _out.print(_run_line(run))
                reported = {run.id for run in latest}  # older runs drop out of the latest 20 for good
            except Exception as e:  # the API may be busy (SQLite locks): say so, and try again next time
                _err.print(f"warning: {scrub(first_line(e))}")
            await asyncio.sleep(tick)


async def _let_finished_runs_exit(runner: Any, client: Any, timeout: float = 20) -> None:
    """Wait until no process the runner tracks belongs to a run that has already ended.

    Runner.astop cancels every run whose process it still tracks, forcing the Cancelled state (prefect 3.7.7,
    runner/_cancellation_manager.py: cancel_all checks no state). A run's process lives on for a few seconds
    after its final state (Prefect flushes events and logs), so a stop in that window would record a build
    that Completed as Cancelled. Runs still going are left to astop to cancel.
    """
    manager = getattr(runner, "_process_manager", None)  # private: tied to the pinned Prefect, as said above
    deadline = time.monotonic() + timeout
    while manager is not None and time.monotonic() < deadline:
        ended = False
        for flow_run_id in manager.flow_run_ids():
            with contextlib.suppress(Exception):  # gone from the API, or the API busy: nothing to wait for
                state = (await client.read_flow_run(flow_run_id)).state
                ended = ended or (state is not None and state.is_final())
        if not ended:
            return
        await asyncio.sleep(0.2)


def _run_line(run: Any) -> str:
    state = run.state
    line = f"run {run.name} ({_utc(run.expected_start_time)}): {state.name if state else 'unknown'}"
    if state is not None and not state.is_completed() and state.message:
        line += f": {scrub(first_line(state.message))}"
    return line


def _utc(when: datetime.datetime | None) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "unknown"
