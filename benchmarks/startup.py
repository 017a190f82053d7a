"""Fixed costs of a build: seconds from the command to its first judge request, and requests per second against
an instant local server.

    python benchmarks/startup.py [--personas 200] [--latency-ms 0]

Runs the real CLI (``polypref build``: Prefect's ephemeral server, the flow, the OpenAI judge, Parquet) on the
default config with the OpenAI backend pointed at a local OpenAI-compatible server (tests/openai_api.py) that
answers at once (or after --latency-ms, as a remote API would). Prints, as its last line, JSON with
seconds_to_first_request (from starting the command to the server receiving its first request, of any kind: with
the fidelity check on, as by default, a survey question; target <= 5 on a warm machine), seconds_total, requests,
requests_per_s_unlimited (requests over the span from the first to the last; target >= 500 on 2 cores) and
judgment_requests_per_s (the persona judgments alone over their own span: the fidelity check's survey questions go
out while Prefect starts, so the first figure's span includes some of the start-up).
With PREFECT_API_URL set (a running ``prefect server start``), the build uses that server instead of starting
Prefect's ephemeral one.
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

from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer, request_kind  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=200, help="population.size")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the server answers after this long, as a remote API does"
    )
    args = parser.parse_args()

    server = ChatAPIServer(reply=prefer_the_longer, delay=args.latency_ms / 1000)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # the default OpenAI judge settings (micro-batch, concurrency), pointed at the local server
    settings = [*judge_settings(server)[:4], f"population.size={args.personas}"]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "polypref", "build", "--out", str(Path(tmp) / "out"), "--no-progress"]
        command += [f"--set={s}" for s in settings]
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        total = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    received = server.received_at
    figures = {
        "personas": args.personas,
        "latency_ms": args.latency_ms,
        "seconds_to_first_request": round(received[0] - start, 2),
        "seconds_total": round(total, 2),
        "requests": len(received),
        "requests_per_s_unlimited": _rate(received),
        "judgment_requests_per_s": _rate(
            [t for body, t in zip(server.bodies, received, strict=True) if request_kind(body) == "judgment"]
        ),
    }
    print(done.stdout.strip().splitlines()[-2] if done.stdout.strip() else "", flush=True)
    print(json.dumps(figures))


def _rate(times: list[float]) -> float | None:
    """Requests per second over the span from the first to the last."""
    span = max(times) - min(times) if times else 0.0
    return round(len(times) / span, 1) if span > 0 else None


if __name__ == "__main__":
    main()
