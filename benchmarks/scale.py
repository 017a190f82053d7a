"""Scale: throughput with 1 and 2 workers, and memory of builds that stream millions of judgments or items.

    python benchmarks/scale.py --workers 1,2 [--judgments 1000000] [--big 10000000] [--items 1000000]

All on the simulated judge, through the real CLI (``polypref build``, Prefect's ephemeral server, Parquet):

- per worker count: the build with ``runner.kind: ray`` (a local Ray cluster, one CPU per worker) and
  ``output.workers`` workers; judgments_per_s is the steady rate of shard completions (judgments of the shards
  finished after the first one, over the time from the first to the last), which leaves out the fixed start-up
  (Ray, each worker's plan) that seconds_by_workers includes; speedup_2 = rate with 2 over rate with 1.
- rss_mib_1m, rss_mib_10m: peak resident set of the build process (local runner) for --judgments and --big
  judgments, and seconds_10m its wall time.
- rss_mib_1m_items: peak resident set of a build of a --items-item source (one pair per item) by 2 personas.

Prints progress, then as its last line one JSON object with those figures.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

from build_throughput import run_measured
from polypref.config import load_config
from polypref.items import load_items, make_pairs
from polypref.population import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="Worker counts to compare, comma-separated")
    parser.add_argument("--judgments", type=int, default=1_000_000, help="Judgments per build (rounded up)")
    parser.add_argument("--big", type=int, default=10_000_000, help="Judgments of the flat-memory check (0: skip)")
    parser.add_argument("--items", type=int, default=1_000_000, help="Items of the item-side check (0: skip)")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    personas = _personas_for(args.judgments)

    rates, seconds = {}, {}
    for n in [int(w) for w in args.workers.split(",")]:
        run = _build(personas, ["runner.kind=ray", f"output.workers={n}"], label=f"{n} worker(s) on Ray")
        rates[n], seconds[n] = run["steady_judgments_per_s"], run["seconds"]
    figures["judgments_per_s"] = rates
    figures["seconds_by_workers"] = seconds
    if 1 in rates and 2 in rates:
        figures["speedup_2"] = round(rates[2] / rates[1], 2)

    one = _build(personas, [], label="1M, local")
    figures["judgments_1m"], figures["rss_mib_1m"], figures["seconds_1m"] = one["judgments"], one["rss"], one["seconds"]
    if args.big:
        big = _build(_personas_for(args.big), [], label="10M, local")
        figures["judgments_10m"], figures["rss_mib_10m"] = big["judgments"], big["rss"]
        figures["seconds_10m"] = big["seconds"]
    if args.items:
        with tempfile.TemporaryDirectory() as tmp:
            items = _write_items(Path(tmp) / "items.jsonl", args.items)
            run = _build(2, [f"items.source={items}", "items.pairs_per_prompt=1"], label=f"{args.items} items")
            figures["items"], figures["rss_mib_1m_items"] = args.items, run["rss"]
            figures["judgments_1m_items"], figures["seconds_1m_items"] = run["judgments"], run["seconds"]
    print(json.dumps(figures))


def _personas_for(judgments: int) -> int:
    config = load_config(None)
    pairs = make_pairs(
        load_items(config.items.source, load_spec(config.population.spec)),
        config.items.pairing,
        config.items.pairs_per_prompt,
        config.seed,
    )
    return math.ceil(judgments / (len(pairs) * 2 * config.judge.samples))


def _build(personas: int, settings: list[str], label: str) -> dict:
    """One `polypref build` (no fidelity check: it asks questions, not judgments); its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "polypref", "build", "--out", str(out), "--no-progress"]
        for setting in [f"population.size={personas}", "fidelity.check=false", *settings]:
            command += ["--set", setting]
        print(f"{label}: {personas} personas ...", flush=True)
        seconds, peaks = run_measured(command, quiet=True)
        summary = json.loads((out / ".polypref" / "summary.json").read_text())
        reports = sorted((out / ".polypref" / "shards").glob("*.json"), key=lambda p: p.stat().st_mtime)
        rate = None
        if len(reports) > 1:
            after_first = sum(json.loads(p.read_text())["units"] for p in reports[1:])
            rate = round(after_first / (reports[-1].stat().st_mtime - reports[0].stat().st_mtime))
    result = {
        "judgments": summary["judgments"],
        "seconds": round(seconds, 1),
        "rss": round(peaks["self"] / 2**20, 1),
        "steady_judgments_per_s": rate,
    }
    print(f"  {result}", flush=True)
    return result


def _write_items(path: Path, n: int) -> Path:
    """n items on the default spec's topics, each with two responses of different stances."""
    spec = load_spec(load_config(None).population.spec)
    rng = random.Random(0)
    topics = list(spec.attitudes.items)
    with path.open("w") as f:
        for i in range(n):
            topic = topics[i % len(topics)]
            a, b = rng.sample(list(spec.scale(topic)), 2)
            responses = [
                {"id": f"i{i}-{k}", "text": f"Response {k} to prompt {i}.", "stance": s} for k, s in ((0, a), (1, b))
            ]
            f.write(
                json.dumps({"id": f"i{i}", "topic": topic, "prompt": f"Prompt {i} on {topic}?", "responses": responses})
                + "\n"
            )
    return path


if __name__ == "__main__":
    main()
