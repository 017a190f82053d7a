"""Judgment reuse and growth, counted in requests to a real OpenAI-compatible server on loopback: a build
asks the backend only for judgments no earlier build of the folder made, whatever else changed, and a build
that grows (more personas, more items) adds shards without touching the ones it has."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from polypref import assets, pipeline, prompts
from polypref.build.state import BuildState
from polypref.config import load_config
from polypref.errors import OutputError
from tests.conftest import CliResult, items_records, run_cli, run_without_prefect
from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, serve

pytestmark = pytest.mark.integration

PERSONAS = 6
PAIRS = 6  # the tiny items: 2 prompts x 3 responses, every pair of a prompt's responses
FREE = PAIRS * 2  # the persona-free run's judgments (for the map): every pair in both orders, one sample
RUN_COLUMNS = ("run_id", "created_at")  # which run wrote a row; everything else must match a clean build


@pytest.fixture
def api() -> Iterator[ChatAPIServer]:
    yield from serve(ChatAPIServer(reply=prefer_the_longer))


class Builds:
    """Builds of one folder through ``api``, each returning (summary, persona judgments it asked for); the
    persona-free judgments it asked for (the map's) are counted apart, in ``free``."""

    def __init__(self, config: Path, api: ChatAPIServer, out: Path):
        self.config, self.api, self.out = config, api, out
        self.free = 0

    def settings(self, *more: str) -> list[str]:
        return [*judge_settings(self.api), f"population.size={PERSONAS}", "output.units_per_shard=48", *more]

    def plan(self, *more: str, out: Path | None = None, add_personas: int = 0):
        config = load_config(self.config, self.settings(*more))
        return pipeline.plan(config, out or self.out, add_personas=add_personas)

    def run(self, *more: str, out: Path | None = None, add_personas: int = 0) -> tuple[dict, int]:
        before, free = self.api.asked("judgment"), self.api.asked("persona-free")
        summary = run_without_prefect(self.plan(*more, out=out, add_personas=add_personas))
        self.free = self.api.asked("persona-free") - free
        assert self.api.requests == self.api.asked("judgment") + self.api.asked("persona-free")  # nothing else
        return summary, self.api.asked("judgment") - before


@pytest.fixture
def builds(tiny_config: Path, api: ChatAPIServer, tmp_path: Path) -> Builds:
    return Builds(tiny_config, api, tmp_path / "out")


def _files(out: Path) -> dict[str, str]:
    """Every data file of a folder but the pairs, weights, review candidates and map (computed over the whole
    dataset, so every refresh rewrites them), by path, with its content hash."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "data").rglob("*.parquet"))
        if p.parent.name not in ("pairs", "weights", "review", "map", "distributions")
    }


def _rows(out: Path, config: str, key: list[str]) -> pl.DataFrame:
    return pl.read_parquet(out / "data" / config).drop(RUN_COLUMNS, strict=False).sort(key)


JUDGMENT_KEY = ["persona_id", "pair_id", "order", "sample"]


def test_changed_filters_shards_and_samples_ask_only_for_new_judgments(builds: Builds) -> None:
    sampled = "judge.temperature=0.7"  # several samples need a temperature; one sample may have it too
    first, calls = builds.run(sampled)
    planned = builds.plan().num_units
    assert planned == PERSONAS * PAIRS * 2 and calls == planned == first["judgments"] and builds.free == FREE
    kept = first["preferences"]

    strict, calls = builds.run(sampled, "filters.min_confidence=0.95")  # the same answers, filtered anew
    assert calls == 0 and strict["reused_judgments"] == planned
    assert strict["preferences"] < kept and strict["judgments"] == planned

    _, calls = builds.run(sampled, "filters.min_confidence=0.95", "output.units_per_shard=100")  # other shards
    assert calls == 0

    more, calls = builds.run(sampled, "judge.samples=2", "filters.min_agreement=0.5")  # sample 0 was asked
    assert more["judgments"] == 2 * planned and calls == planned and builds.free == FREE
    back, calls = builds.run(sampled)  # and back to the first settings: the first dataset again, for nothing
    assert calls == 0 and builds.free == 0 and back["preferences"] == kept
    assert BuildState(builds.out).stored_judgments() == 2 * (planned + FREE)  # every answer stored once


def test_a_grown_population_asks_only_for_the_new_personas_and_keeps_every_shard(builds: Builds) -> None:
    builds.run()
    before = _files(builds.out)
    _, calls = builds.run(f"population.size={2 * PERSONAS}")
    assert calls == PERSONAS * PAIRS * 2 and builds.free == 0  # the new personas' judgments, and no other
    after = _files(builds.out)
    assert {k: after[k] for k in before} == before  # every file already built is byte for byte the same
    assert len(after) > len(before)

    # a scheduled refresh: --add-personas 6 on the same config (population.size + what refreshes added)
    _, calls = builds.run(f"population.size={2 * PERSONAS}", add_personas=PERSONAS)
    assert calls == PERSONAS * PAIRS * 2
    grown = _files(builds.out)
    assert {k: grown[k] for k in after} == after

    # the grown folder holds what one build of the whole population holds, row for row
    clean = builds.out.parent / "clean"
    whole, _ = builds.run(f"population.size={3 * PERSONAS}", out=clean)
    for config, key in (("judgments", JUDGMENT_KEY), ("preferences", ["persona_id", "pair_id"])):
        assert _rows(builds.out, config, key).equals(_rows(clean, config, key)), config
    personas = pl.read_parquet(builds.out / "data" / "personas").drop(RUN_COLUMNS)
    assert personas.equals(pl.read_parquet(clean / "data" / "personas").drop(RUN_COLUMNS))
    runs = set(pl.read_parquet(builds.out / "data" / "personas")["run_id"])
    assert len(runs) == 3  # one per run, and the card lists them all
    text = (builds.out / "README.md").read_text()
    assert all(f"| `{run}` |" in text for run in runs) and f"size: {3 * PERSONAS}" in text

    # the card counts the whole dataset, not the last run's part of it
    card = yaml.safe_load((builds.out / "README.md").read_text().split("---")[1])
    counts = {c["config_name"]: c["splits"][0]["num_examples"] for c in card["dataset_info"]}
    assert counts == {
        "preferences": whole["preferences"],
        "judgments": whole["judgments"],
        "personas": 3 * PERSONAS,
        "pairs": PAIRS,
        "weights": whole["preferences"],
        "review": whole["review"],
        "map": whole["map"],
        "distributions": whole["distributions"],
    }
    weights = pl.read_parquet(builds.out / "data" / "weights").drop(RUN_COLUMNS)
    assert weights.equals(pl.read_parquet(clean / "data" / "weights").drop(RUN_COLUMNS))  # of the whole dataset


def test_new_items_ask_only_for_their_pairs(builds: Builds, tiny: dict[str, Path]) -> None:
    builds.run()
    before = _files(builds.out)
    records = items_records()
    extra = {
        **records[0],
        "id": "extra",
        "prompt": records[0]["prompt"] + " (asked again, later)",
        "responses": [{**r, "id": "extra-" + r["id"]} for r in records[0]["responses"]],
    }
    with tiny["items"].open("a") as f:
        f.write(json.dumps(extra) + "\n")
    added = len(builds.plan().pairs) - PAIRS
    assert added > 0
    summary, calls = builds.run()
    assert calls == PERSONAS * added * 2 and builds.free == added * 2
    after = _files(builds.out)
    assert {k: after[k] for k in before} == before
    assert summary["judgments"] == PERSONAS * (PAIRS + added) * 2


def test_a_changed_judge_or_template_asks_everything_again(
    builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds.run()
    planned = builds.plan().num_units
    _, calls = builds.run("judge.temperature=0.7")
    assert calls == planned  # another judge: no stored answer is its answer

    edited = tmp_path / "assets"  # the assets as a user who edits the pairwise prompt has them
    edited.mkdir()
    for folder in ("personas", "schemas", "data", "flows"):
        (edited / folder).symlink_to(assets.root() / folder)
    shutil.copytree(assets.root() / "prompts", edited / "prompts")
    template = edited / "prompts" / "judge_pairwise.j2"
    template.write_text(template.read_text() + "\nThink about it twice.\n")
    monkeypatch.setattr(assets, "root", lambda: edited)
    prompts.environment.cache_clear()
    try:
        _, calls = builds.run()
    finally:
        prompts.environment.cache_clear()
    assert calls == planned
    assert "Think about it twice." in builds.api.bodies[-1]["messages"][-1]["content"]


def test_a_shard_damaged_on_disk_is_rebuilt_from_the_store(builds: Builds) -> None:
    builds.run()
    before = _rows(builds.out, "judgments", JUDGMENT_KEY)
    shard = sorted((builds.out / "data" / "judgments").glob("*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:100])  # cut short, as a full disk or a bad copy leaves it
    _, calls = builds.run()
    assert calls == 0
    assert _rows(builds.out, "judgments", JUDGMENT_KEY).equals(before)


def _polypref(*args: str) -> CliResult:
    return run_cli(*args)


def test_a_foreign_or_damaged_store_segment_stops_the_build_naming_it(builds: Builds) -> None:
    builds.run()
    store = builds.plan().store.root
    segment = sorted(store.glob("*.parquet"))[0]
    held = pl.read_parquet(segment).height
    segment.write_bytes(b"not parquet at all")
    with pytest.raises(OutputError, match=segment.name):
        pipeline.check_output(builds.plan())
    stranger = store / "0123abcd.parquet"
    pl.DataFrame({"k0": [1], "k1": [2]}).write_parquet(stranger)  # parquet, but not a store segment
    segment.unlink()
    with pytest.raises(OutputError, match=r"0123abcd\.parquet.*not a judgment store segment"):
        pipeline.check_output(builds.plan())
    stranger.unlink()
    _, calls = builds.run()  # the way out the message gives: delete it; the finished shards still hold it all
    assert calls == 0  # (the persona-free judgments are in no shard: any the segment held are asked again)
    free = builds.free
    _, calls = builds.run("filters.min_confidence=0.9")  # a rebuild asks again for what the segment held
    assert calls + free + builds.free == held and calls < builds.plan().num_units


def test_status_reports_a_partial_and_a_finished_build(builds: Builds, tiny_config: Path) -> None:
    plan = builds.plan()
    run = pipeline.prepare_output(plan)
    from polypref.judges import make_judge

    judge = make_judge(plan.config.judge, plan.config.seed)
    try:
        pipeline.run_shard(plan, run, 0, judge)
    finally:
        judge.close()
    partial = _polypref("status", str(builds.out), "--json", "-")
    assert partial.returncode == 0, partial.stderr
    figures = json.loads(partial.stdout)
    assert figures["finished"] is False
    assert figures["shards"] == {"done": 1, "total": plan.num_shards}
    assert figures["stored"]["this_judge"] == len(plan.batch(0)) == figures["requests"]
    assert figures["judge"] == {"backend": "openai", "model": "served-model"}
    assert figures["tokens"]["prompt_tokens"] > 0

    builds.run()
    text = _polypref("status", str(builds.out))
    assert text.returncode == 0, text.stderr
    assert f"shards: {plan.num_shards} of {plan.num_shards} done" in text.stdout
    assert f"stored judgments: {plan.num_units + FREE} by this judge (openai, served-model)" in text.stdout

    nothing = _polypref("status", str(builds.out.parent / "nowhere"))
    assert nothing.returncode == 2 and "is not a folder" in nothing.stderr and "Traceback" not in nothing.stderr
    report = BuildState(builds.out).report_path(0)
    report.write_text(report.read_text().replace('"units": ', '"units": null, "was": '))
    counted = _polypref("status", str(builds.out), "--json", "-")  # a damaged report: that shard is not done
    assert counted.returncode == 0 and json.loads(counted.stdout)["shards"]["done"] == plan.num_shards - 1
    segment = sorted(plan.store.root.glob("*.parquet"))[0]
    segment.write_bytes(b"torn")
    damaged = _polypref("status", str(builds.out))
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr and "store" in damaged.stderr
    state = BuildState(builds.out).state_file
    state.write_text(state.read_text().replace('"judge": {', '"judge": "x", "was": {'))
    damaged = _polypref("status", str(builds.out))
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr and "state.json" in damaged.stderr


def test_a_grown_folder_keeps_its_added_personas_through_a_settings_change(builds: Builds) -> None:
    builds.run()
    builds.run(add_personas=PERSONAS)
    strict, calls = builds.run("filters.min_confidence=0.9")  # a rebuild: every shard anew, from the store
    assert calls == 0 and strict["personas"] == 2 * PERSONAS
    assert pl.read_parquet(builds.out / "data" / "personas").height == 2 * PERSONAS
    _, calls = builds.run(f"population.size={PERSONAS + 1}")  # population.size + the personas refreshes added
    assert calls == PAIRS * 2 and len(builds.plan(f"population.size={PERSONAS + 1}").population.personas) == 13


def test_a_stopped_refresh_is_finished_by_the_next_not_grown_twice(builds: Builds) -> None:
    builds.run()
    shards = builds.plan().num_shards
    grown = builds.plan(add_personas=PERSONAS)
    pipeline.prepare_output(grown)  # the refresh starts, writes its layout, and is killed
    assert BuildState(builds.out).unfinished() and builds.plan().num_shards == grown.num_shards > shards
    again, calls = builds.run(add_personas=PERSONAS)  # the schedule's next run: the same command
    assert again["personas"] == 2 * PERSONAS and calls == PERSONAS * PAIRS * 2
    _, calls = builds.run(add_personas=PERSONAS)  # and the one after grows again
    assert calls == PERSONAS * PAIRS * 2 and len(builds.plan().population.personas) == 3 * PERSONAS


def test_counts_allocations_grow_as_shares(builds: Builds, tiny: dict[str, Path]) -> None:
    counts = ["population.allocation={north · male: 2, north · female: 2, south · male: 1, south · female: 1}"]
    builds.run(*counts)
    _, calls = builds.run(*counts, add_personas=PERSONAS)
    assert calls == PERSONAS * PAIRS * 2
    groups = pl.read_parquet(builds.out / "data" / "personas")["group"].value_counts()
    assert dict(groups.iter_rows()) == {"north · male": 4, "north · female": 4, "south · male": 2, "south · female": 2}


def test_a_layout_torn_between_two_runs_is_laid_out_anew(builds: Builds) -> None:
    builds.run()
    state = BuildState(builds.out)
    grown = builds.plan(add_personas=PERSONAS)
    # what a refresh killed between writing its persona digests and state.json leaves
    pl.DataFrame({"digest": list(grown.persona_digests)}).write_parquet(state.layout_dir / "personas.parquet")
    assert state.read_layout(builds.plan().fingerprint) is None
    summary, calls = builds.run()
    assert calls == 0 and summary["personas"] == PERSONAS  # rebuilt from the store, nothing skipped


def test_requests_refused_for_what_they_are_are_asked_again_by_a_later_build(tiny_config: Path, tmp_path: Path) -> None:
    """Out of credits, too long: such a refusal is not the model's answer, so the store leaves it out."""
    for api in serve(ChatAPIServer(reply=prefer_the_longer, too_long_text="road repair")):
        builds = Builds(tiny_config, api, tmp_path / "out")
        first, calls = builds.run()
        refused = first["reasons"].get("request_rejected", 0) or first["errors"].get("request_rejected", 0)
        assert refused == PERSONAS * PAIRS  # the prompts on road repair: half the pairs
        assert builds.free == FREE
        assert BuildState(builds.out).stored_judgments() == calls - refused + FREE // 2
        api.too_long_text = None  # the prompt made to fit (here: the server's limit raised)
        again, calls = builds.run("filters.min_confidence=0.5")
        assert calls == refused and builds.free == FREE // 2 and "request_rejected" not in again["errors"]
