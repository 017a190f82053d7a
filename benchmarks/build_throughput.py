"""Whole-build throughput with the simulated judge: the real CLI, Prefect flow and Parquet output.

    python benchmarks/build_throughput.py --judgments 1000000

Prints progress lines, then as its last line one JSON object with judgments, seconds, judgments_per_s,
peak_rss_mib (the build process itself, sampled every 50 ms) and peak_rss_tree_mib (the build process plus
its children, Prefect's ephemeral server among them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from polypref.config import load_config
from polypref.items import load_items, make_pairs
from polypref.population import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000, help="Raw judgments to make (rounded up)")
    parser.add_argument("--set", action="append", default=[], help="Extra config override, key.path=value")
    args = parser.parse_args()

    config = load_config(None, args.set)
    pairs = make_pairs(
        load_items(config.items.source, load_spec(config.population.spec)),
        config.items.pairing,
        config.items.pairs_per_prompt,
        config.seed,
    )
    per_persona = len(pairs) * 2 * config.judge.samples
    personas = math.ceil(args.judgments / per_persona)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [
            sys.executable,
            "-m",
            "polypref",
            "build",
            "--out",
            str(out),
            "--no-progress",
            "--set",
            f"population.size={personas}",
            *(f"--set={s}" for s in args.set),
        ]
        print(f"building {personas} personas x {per_persona} judgments each ...", flush=True)
        seconds, peaks = run_measured(command)
        summary = json.loads((out / ".polypref" / "summary.json").read_text())
        size_mib = sum(p.stat().st_size for p in (out / "data").rglob("*.parquet")) / 2**20

    judgments = summary["judgments"]
    print(
        json.dumps(
            {
                "judgments": judgments,
                "seconds": round(seconds, 2),
                "judgments_per_s": round(judgments / seconds),
                "peak_rss_mib": round(peaks["self"] / 2**20, 1),
                "peak_rss_tree_mib": round(peaks["tree"] / 2**20, 1),
                "preferences": summary["preferences"],
                "shards": summary["shards"],
                "parquet_mib": round(size_mib, 1),
            }
        )
    )


def run_measured(command: list[str], quiet: bool = False) -> tuple[float, dict]:
    """Run a build command to the end; its wall seconds and peak resident sets (sample_rss). Exits on failure."""
    start = time.perf_counter()
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out)
    peaks = sample_rss(proc)
    if proc.wait() != 0:
        raise SystemExit(f"build failed with exit code {proc.returncode}")
    seconds = time.perf_counter() - start
    peaks["stop"].set()
    peaks["thread"].join()
    return seconds, peaks


def sample_rss(proc: subprocess.Popen) -> dict:
    """Poll the build's resident set (alone, and with its children) until told to stop."""
    peaks: dict = {"self": 0, "tree": 0, "stop": threading.Event()}
    root = psutil.Process(proc.pid)

    def poll() -> None:
        while not peaks["stop"].wait(0.05):
            try:
                own = root.memory_info().rss
                tree = own + sum(c.memory_info().rss for c in root.children(recursive=True))
            except psutil.Error:
                continue
            peaks["self"] = max(peaks["self"], own)
            peaks["tree"] = max(peaks["tree"], tree)

    peaks["thread"] = threading.Thread(target=poll, daemon=True)
    peaks["thread"].start()
    return peaks


if __name__ == "__main__":
    main()
