"""Schedules for `polypref serve`: a cron or interval checked before Prefect starts, and the one waiting run
kept on an ephemeral server, which schedules nothing itself (see serve.py)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any
from uuid import UUID

from polypref.errors import ConfigError

FINISHED = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


# A schedule that runs less often than yearly is a mistake: --interval is at most MAX_INTERVAL, and a cron must
# fire within CRON_HORIZON (room for 29 February, which comes every 4 years)
MAX_INTERVAL = datetime.timedelta(days=366)


CRON_HORIZON = datetime.timedelta(days=5 * 366)


def make_schedule(cron: str, interval: float | None) -> Any:
    """Prefect's schedule for ``interval`` seconds, or else for ``cron`` (UTC); ConfigError if invalid.

    A schedule must fire, and at least yearly: an interval past MAX_INTERVAL (inf, 1e20: timedelta overflows)
    or a cron with no date within CRON_HORIZON (31 February) would serve forever and never build.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from pydantic import ValidationError

    option = "--interval" if interval is not None else "--cron"
    try:
        if interval is not None:
            if not 0 < interval <= MAX_INTERVAL.total_seconds():  # also refuses nan
                raise ValueError(
                    f"must be a number of seconds > 0 and at most {MAX_INTERVAL.days} days "
                    f"({MAX_INTERVAL.total_seconds():.0f} s): a schedule that runs less often than yearly is a "
                    f"mistake; got {interval:.12g}"
                )
            return IntervalSchedule(interval=datetime.timedelta(seconds=interval))
        schedule = CronSchedule(cron=cron, timezone="UTC")
        if _next_date(schedule, within=CRON_HORIZON) is None:
            raise ValueError(
                f"'{cron}' never fires within the next {CRON_HORIZON.days // 365} years "
                "(a date that never comes, such as 31 February?)"
            )
        return schedule
    except ValidationError as e:
        raise ConfigError("command line", [(option, e.errors()[0]["msg"])]) from None
    except ValueError as e:
        raise ConfigError("command line", [(option, str(e))]) from None


def _next_date(schedule: Any, within: datetime.timedelta) -> datetime.datetime | None:
    """The schedule's first date from now, as the server's scheduler (and ours, ``Scheduler``) computes it;
    None if there is none within ``within``."""
    start = datetime.datetime.now(datetime.UTC)
    try:
        dates = asyncio.run(_server_schedule(schedule).get_dates(n=1, start=start, end=start + within))
    except ValueError:  # croniter's CroniterBadDateError: it found no date at all (it looks decades ahead)
        return None
    return dates[0] if dates else None


def _server_schedule(schedule: Any) -> Any:
    """The server's own class of a client schedule, which computes its dates (the client's cannot). For its
    dates only: Prefect refuses server schedule objects in deployments."""
    from prefect.server.schemas import schedules

    return getattr(schedules, type(schedule).__name__).model_validate(schedule.model_dump())


def describe_schedule(cron: str, interval: float | None) -> str:
    return f"every {interval:g} s" if interval is not None else f"on cron '{cron}' (UTC)"


class Scheduler:
    """For a server that runs no scheduler: keeps one run of the deployment waiting, at the schedule's next
    time after the last run it created (see the module docstring)."""

    def __init__(self, client: Any, deployment_id: UUID, schedule: Any):
        self.client, self.deployment_id = client, deployment_id
        self.dates = _server_schedule(schedule)  # computes the times, as the server's scheduler would
        self.last: datetime.datetime | None = None

    async def keep_one_waiting(self) -> None:
        from prefect.states import Scheduled

        if await flow_runs(self.client, self.deployment_id, ["SCHEDULED"], limit=1):
            return
        start = datetime.datetime.now(datetime.UTC)
        if self.last is not None and self.last >= start:
            start = self.last + datetime.timedelta(microseconds=1)
        dates = await self.dates.get_dates(n=1, start=start)
        if not dates:
            return
        self.last = dates[0]
        await self.client.create_flow_run_from_deployment(
            self.deployment_id,
            state=Scheduled(scheduled_time=dates[0]),
            idempotency_key=f"polypref serve {self.deployment_id} {dates[0].isoformat()}",
        )

    async def forget_waiting_runs(self) -> None:
        for run in await flow_runs(self.client, self.deployment_id, ["SCHEDULED"]):
            await self.client.delete_flow_run(run.id)


async def flow_runs(
    client: Any,
    deployment_id: UUID,
    states: list[str],
    *,
    ended_after: datetime.datetime | None = None,
    limit: int | None = None,
    sort: str | None = None,
) -> list[Any]:
    """The deployment's flow runs in ``states`` (Prefect state types)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)))
    if ended_after is not None:
        runs.end_time = FlowRunFilterEndTime(after_=ended_after)
    return await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=runs,
        sort=FlowRunSort[sort] if sort else None,
        limit=limit,
    )
