"""Judgments paid for once: backend calls and wall time of a rebuild after a filter change and after the
population doubles, against a local OpenAI-compatible server that counts the requests it answers.

    python benchmarks/reuse.py [--personas 40] [--latency 0.2] [--concurrency 32]

Three runs of the real CLI (``polypref build``: Prefect flow, OpenAI judge, Parquet) into one folder, on the
default config: a first build of N personas, the same with ``filters.min_confidence`` raised, then with 2N
personas. The server (tests/openai_api.py) answers each request after ``--latency`` seconds, as a remote API
would. Prints one line per run, then as its last line JSON with calls_first_build, calls_after_filter_change
(target 0), calls_after_population_doubling and calls_for_new_personas (what the doubling must cost: the new
personas' judgments only), and the wall time of each rebuild as a ratio of the first build's
(wall_ratio_filter_change, wall_ratio_population_doubling).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in tests/

from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer  # noqa: E402

from polypref import pipeline  # noqa: E402
from polypref.config import load_config  # noqa: E402


def build(out: Path, settings: list[str], server: ChatAPIServer) -> tuple[int, float]:
    """Run ``polypref build``; return the requests it made and its wall time."""
    before = server.requests
    command = [sys.executable, "-m", "polypref", "build", "--out", str(out), "--no-progress"]
    command += [f"--set={s}" for s in settings]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return server.requests - before, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=40, help="Personas of the first build (doubled later)")
    parser.add_argument("--latency", type=float, default=0.2, help="Seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=32, help="Requests in flight")
    args = parser.parse_args()

    server = ChatAPIServer(delay=args.latency, reply=prefer_the_longer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    judge = [
        *judge_settings(server),
        f"judge.concurrency={args.concurrency}",
        f"judge.max_concurrency={args.concurrency}",
    ]
    first = [*judge, f"population.size={args.personas}"]
    filtered = [*first, "filters.min_confidence=0.9"]
    doubled = [*filtered, f"population.size={2 * args.personas}"]
    per_persona = pipeline.plan(load_config(None, first), Path(tempfile.gettempdir()) / "unused").num_units
    per_persona //= args.personas

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for name, settings in (
            ("first_build", first),
            ("after_filter_change", filtered),
            ("after_population_doubling", doubled),
        ):
            calls, seconds = build(out, settings, server)
            figures[f"calls_{name}"] = calls
            figures[f"seconds_{name}"] = round(seconds, 2)
            print(f"{name}: {calls} requests, {seconds:.1f} s", flush=True)
    server.shutdown()
    figures["calls_for_new_personas"] = args.personas * per_persona
    for name in ("filter_change", "population_doubling"):
        figures[f"wall_ratio_{name}"] = round(figures[f"seconds_after_{name}"] / figures["seconds_first_build"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
