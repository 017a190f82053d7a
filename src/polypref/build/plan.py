"""The plan of a build (what to judge, in which shards, into which folder) and the identity of one run.

Its own module so that what reads a plan (the card, the report) need not import the pipeline that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from polypref import splits
from polypref.build.layout import Layout
from polypref.build.state import BuildState
from polypref.build.store import JudgmentStore, digest_words, unit_keys
from polypref.config import BuildConfig
from polypref.dataset.tables import conversational
from polypref.fidelity.questions import checked_topics
from polypref.fidelity.sample import sampling
from polypref.population import Population
from polypref.population.portrayal import Portrayer
from polypref.records import Item, ResponsePair, UnitBatch, record_digest


@dataclass(frozen=True)
class BuildPlan:
    config: BuildConfig
    out: Path
    population: Population
    items: tuple[Item, ...]
    pairs: tuple[ResponsePair, ...]
    fingerprint: str  # the settings (build_fingerprint): a folder's shards are kept only under the same one
    judge_key: str  # the judge's identity in the judgment store (fingerprint.judge_key)
    layout: Layout  # which shards hold which personas and pairs (build.layout)
    keeps_folder: bool  # the layout grows the folder's own (its shards stay); False: laid out anew
    persona_digests: tuple[str, ...]  # per persona of the population, its content digest
    pair_digests: tuple[str, ...]  # per pair, its content digest (a generated pair's: of its slots and writers)
    added_personas: int = 0  # personas past population.size that refreshes (--add-personas) added
    item_source: dict[str, Any] = field(default_factory=dict)  # where the items came from, for the card
    skipped_rows: tuple[dict[str, Any], ...] = ()  # source rows left out (items.on_error, items.drop_duplicates)
    source_columns: pl.DataFrame | None = None  # prompt_id -> its item's kept source columns, as one struct

    @property
    def struct_fields(self) -> dict[str, list[str]]:
        """The fields of the published ``source_columns`` (none kept: no such column)."""
        if self.source_columns is None:
            return {}
        return {"source_columns": [f.name for f in self.source_columns.schema["source_columns"].fields]}

    @cached_property
    def portrayer(self) -> Portrayer:
        return self.population.portrayer(self.config.portrayal.hold_out_judged_topic)

    @property
    def num_shards(self) -> int:
        return self.layout.num_shards

    @property
    def num_units(self) -> int:
        return self.layout.units(self.config.judge.samples)

    def planned_requests(self) -> dict[str, int]:
        """The model requests the build will make at most, by kind (none with the simulated judge, which asks
        no model): every judgment of the personas (the adaptive rule's budget), of the persona-free run, the
        fidelity check's questions and the responses to generate. Saved answers make a rerun ask fewer."""
        config = self.config
        planned = {}
        if config.judge.backend != "simulated":
            planned["judgments"] = self.num_units
            planned["persona_free"] = self.persona_free_units
            if config.fidelity.check:
                asked = self.fidelity_personas() or len(self.population.personas)
                topics = len(config.fidelity.topics or self.population.spec.attitudes.items)
                drawn = sampling(config)
                samples = 1 if drawn is None else drawn.samples
                planned["fidelity_questions"] = (min(asked, len(self.population.personas)) + 1) * topics * samples
        if config.generate is not None:
            planned["generation"] = sum(len(item.responses) for item in self.items)
        return planned

    def fidelity_personas(self) -> int | None:
        """How many personas the build's fidelity check asks (None: all): ``fidelity.personas``, else as many as
        ``fidelity.budget`` allows an LLM judge: every persona costs topics x samples requests and the
        persona-free model as much again once, against the budget's share of the planned judgments; at least one
        persona per group, so that every group has a figure (a budget too small for that is exceeded)."""
        fidelity = self.config.fidelity
        if fidelity.personas is not None or self.config.judge.backend == "simulated" or fidelity.budget is None:
            return fidelity.personas
        per_persona = len(checked_topics(self.population.spec, fidelity.topics)) * fidelity.samples
        groups = len({p.group for p in self.population.personas})
        return max(groups, int(fidelity.budget * self.num_units) // per_persona - 1)

    @property
    def persona_free_units(self) -> int:
        """Judgments the persona-free run makes on top of the personas': every pair, both orders, each sample."""
        return len(self.pairs) * 2 * self.config.judge.samples

    @cached_property
    def split_names(self) -> tuple[str, ...]:
        """The splits the population's personas fall in (output.splits): the files each per-persona config has
        once finalized; computed once (a share with no persona would hash the whole population each time)."""
        return splits.present((p.id for p in self.population.personas), self.config.output.splits)

    @cached_property
    def conversational(self) -> bool:
        """Whether every shard publishes its texts as messages (decided over all the build's pairs, once)."""
        return conversational(self.pairs)

    @cached_property
    def _part_pair_rows(self) -> dict[int, np.ndarray]:
        """Per part (by its first shard), the plan's index of each of its pairs, in the part's order: an array
        per part, not a dict per pair (a source of 10^6 items would hold ~60 MB for it through the build)."""
        rows = pl.DataFrame({"digest": self.pair_digests}).with_row_index("row").unique("digest", keep="last")
        return {
            part.first_shard: pl.DataFrame({"digest": part.pairs})
            .join(rows, on="digest", how="left", maintain_order="left")["row"]
            .to_numpy()
            for part in self.layout.parts
        }

    def batch(self, index: int) -> UnitBatch:
        part = self.layout.part_of(index)
        start, end = part.shard_personas(index)
        first, last = part.shard_pair_range(index)
        pairs = tuple(self.pairs[i] for i in self._part_pair_rows[part.first_shard][first:last])
        return UnitBatch.persona_major(
            self.population.personas[start:end],
            pairs,
            self.config.judge.samples,
            shard=index,
            portray=self.portrayer,
        )

    def unit_keys(self, batch: UnitBatch, persona_digests: list[str] | None = None) -> np.ndarray:
        """Each unit's key in the judgment store; ``persona_digests`` for personas not of the population (the
        persona-free stand-in).

        A pair's key names the texts judged: its digest, taken from the batch's pairs as they are now. A
        generated pair's layout digest names its slots instead, and generated again (a deleted cache, a sampled
        API) its texts differ, so the answers stored for the old ones are not theirs. Digested per batch, not
        held per pair of the plan: a source of 10^6 items would hold a second index for it."""
        personas = digest_words(persona_digests or [self._persona_digest[p.id] for p in batch.personas])
        pairs = digest_words([record_digest(p) for p in batch.pairs])
        return unit_keys(self.judge_key, personas, pairs, batch)

    @cached_property
    def _persona_digest(self) -> dict[str, str]:
        return {p.id: d for p, d in zip(self.population.personas, self.persona_digests, strict=True)}

    @property
    def state(self) -> BuildState:
        return BuildState(self.out)

    @cached_property
    def store(self) -> JudgmentStore:
        """The judgment store of this plan's judge (one per plan: the shards share its index)."""
        return self.state.store(self.judge_key)


@dataclass(frozen=True)
class RunState:
    run_id: str
    created_at: datetime

    def created(self, created_at: str | None) -> datetime:
        """When a part's rows were made: its own run's time where the state recorded one, else this run's."""
        return datetime.fromisoformat(created_at) if created_at else self.created_at
