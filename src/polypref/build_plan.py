"""The plan of a build (what to judge, in which shards, into which folder) and the identity of one run.

Its own module so that what reads a plan (the card, the report) need not import the pipeline that makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from polypref.config import BuildConfig
from polypref.dataset.state import BuildState
from polypref.population import Population
from polypref.records import Item, ResponsePair, UnitBatch


@dataclass(frozen=True)
class BuildPlan:
    config: BuildConfig
    out: Path
    population: Population
    items: tuple[Item, ...]
    pairs: tuple[ResponsePair, ...]
    personas_per_shard: int
    fingerprint: str

    @property
    def num_shards(self) -> int:
        return math.ceil(len(self.population.personas) / self.personas_per_shard)

    @property
    def units_per_persona(self) -> int:
        return len(self.pairs) * 2 * self.config.judge.samples

    @property
    def num_units(self) -> int:
        return len(self.population.personas) * self.units_per_persona

    def batch(self, index: int) -> UnitBatch:
        start = index * self.personas_per_shard
        personas = self.population.personas[start : start + self.personas_per_shard]
        return UnitBatch.persona_major(personas, self.pairs, self.config.judge.samples, shard=index)

    @property
    def state(self) -> BuildState:
        return BuildState(self.out)


@dataclass(frozen=True)
class RunState:
    run_id: str
    created_at: datetime
