"""Workers of a distributed build, without Prefect: leases, and several workers over one folder building the
dataset a single process builds, no unit judged twice, a dead worker's shard taken over."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polypref import pipeline
from polypref.config import load_config
from polypref.judges import make_judge
from polypref.runners import workers
from polypref.runners.claims import ShardClaims
from tests.conftest import persona_free_units, run_without_prefect

VOLATILE = ["run_id", "created_at"]


def read(out: Path, config: str, by: list[str]) -> pl.DataFrame:
    return pl.read_parquet(sorted((out / "data" / config).glob("*.parquet"))).drop(VOLATILE).sort(by)


def test_a_lease_is_held_by_one_worker_until_released(tmp_path):
    a, b = ShardClaims(tmp_path, ttl=30), ShardClaims(tmp_path, ttl=30)
    assert a.claim("3") and not b.claim("3")
    assert b.claim("4")  # other jobs stay free
    a.release("3")
    assert b.claim("3") and not a.claim("3")
    a.close(), b.close()
    assert not list(tmp_path.glob("*.lease"))


def test_of_many_racing_workers_exactly_one_gets_the_job(tmp_path):
    claims = [ShardClaims(tmp_path, ttl=30) for _ in range(16)]
    barrier = threading.Barrier(len(claims))
    won: list[bool] = [False] * len(claims)

    def race(i: int) -> None:
        barrier.wait()
        won[i] = claims[i].claim("0")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(claims))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    for c in claims:
        c.close()


def test_a_silent_workers_lease_is_taken_over_and_its_late_release_keeps_the_new_one(tmp_path):
    dead, alive = ShardClaims(tmp_path, ttl=0.4), ShardClaims(tmp_path, ttl=0.4)
    assert dead.claim("7")
    time.sleep(0.3)
    assert not alive.claim("7")  # renewed (every ttl/4): still alive
    dead._stop.set()  # it hangs: no more renewals
    time.sleep(0.9)
    assert alive.claim("7")
    dead.release("7")  # a worker that wakes up must not free the lease it lost
    assert alive.holder_of("7") == alive.holder
    alive.close()


class _Counting:
    """The real judge, counting the units it is asked for; ``hang_after`` micro-batches (of ``chunk`` units)
    into its first shard, it stops renewing its leases and blocks for good, as a worker whose machine froze."""

    def __init__(self, inner, chunk: int = 50, hang_after: int | None = None, claims: ShardClaims | None = None):
        self.inner, self.info, self.chunk = inner, inner.info, chunk
        self.hang_after, self.claims = hang_after, claims
        self.asked = 0
        self.batches = 0

    def judge(self, batch):
        for start in range(0, len(batch), self.chunk):
            rows = np.arange(start, min(start + self.chunk, len(batch)))
            part = batch.take(rows)
            self.asked += len(part)
            for frame in self.inner.judge(part):
                yield frame.with_columns(unit=pl.Series(rows).gather(frame["unit"]))
            self.batches += 1
            if self.hang_after is not None and self.batches >= self.hang_after:
                self.claims._stop.set()
                threading.Event().wait()  # never returns: the thread is a daemon

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("hang", [False, True], ids=["two-workers", "one-hangs"])
def test_workers_build_what_one_process_builds_and_judge_each_unit_once(tiny_config, tmp_path, hang):
    config = load_config(tiny_config, ["output.units_per_shard=120", "judge.samples=2"])
    alone = tmp_path / "alone"
    run_without_prefect(pipeline.plan(config, alone))

    out = tmp_path / "shared"
    plan = pipeline.plan(config, out)
    run = pipeline.prepare_output(plan)  # what the head does before it starts workers
    judges, threads = [], []
    for i in range(2):
        own = dataclasses.replace(plan)  # a plan (and store index) of its own, as in another process
        claims = ShardClaims(own.state.claims_dir, ttl=0.6)
        judge = _Counting(
            make_judge(config.judge, config.seed),
            hang_after=1 if hang and i == 0 else None,
            claims=claims,
        )
        judges.append(judge)
        thread = threading.Thread(
            target=workers.work, args=(own, run, judge, 0.6, 0.05), kwargs={"claims": claims}, daemon=True
        )
        thread.start()
        threads.append(thread)
        time.sleep(0.05 if i == 0 else 0)  # the one that hangs takes a shard first
    threads[1].join(timeout=120)
    assert not threads[1].is_alive()
    assert workers.finished(plan, run)
    reports, info, free = workers.gather(dataclasses.replace(plan), run)
    pipeline.finalize(plan, run, reports, info, free)

    for name, by in (
        ("judgments", ["persona_id", "pair_id", "order", "sample"]),
        ("preferences", ["persona_id", "pair_id"]),
    ):
        assert read(out, name, by).equals(read(alone, name, by)), name
    units = plan.num_units + persona_free_units(plan)
    asked = sum(j.asked for j in judges)
    # one hung worker's micro-batch (saved) is never asked again; its unsaved work is at most one micro-batch
    assert units <= asked <= units + (judges[0].chunk if hang else 0)
    if hang:
        assert judges[0].asked == judges[0].chunk  # it judged one micro-batch, then froze holding its shard
    else:
        assert all(j.asked > 0 for j in judges)  # both took shards
