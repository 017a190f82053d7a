"""The plan of a build (what to judge, in which shards, into which folder) and the identity of one run.

Its own module so that what reads a plan (the card, the report) need not import the pipeline that makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from polypref.config import BuildConfig
from polypref.dataset.state import BuildState
from polypref.population import Population
from polypref.population.portrayal import Portrayer
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
    item_source: dict[str, Any] = field(default_factory=dict)  # where the items came from, for the card

    @cached_property
    def portrayer(self) -> Portrayer:
        return self.population.portrayer(self.config.portrayal.hold_out_judged_topic)

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
        return UnitBatch.persona_major(
            personas,
            self.pairs,
            self.config.judge.samples,
            shard=index,
            portray=self.portrayer,
        )

    @property
    def state(self) -> BuildState:
        return BuildState(self.out)


@dataclass(frozen=True)
class RunState:
    run_id: str
    created_at: datetime
