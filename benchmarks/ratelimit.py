"""Goodput against a rate-limited OpenAI-compatible server: how close the judge runs to the allowed rate, and
how many of its requests the server refuses.

    python benchmarks/ratelimit.py [--rpm 1200] [--n 600] [--concurrency 16] [--endpoints 1] [--no-headers] [--known]

The server (tests/openai_api.py, ``rpm``) keeps a request budget as OpenAI does: a token bucket refilled
continuously (holding one second's worth), told in ``x-ratelimit-*`` headers on every answer, HTTP 429 with no
Retry-After past it; it answers at once otherwise. ``--n`` judgments of the default GSS personas and items go
through the OpenAI judge (slow start from ``--concurrency``, then pacing from the headers). With
``--endpoints`` > 1, each endpoint has its own budget of ``--rpm`` and the judge gets them all as a fleet.
``--no-headers``: the server announces nothing (no x-ratelimit-* headers, a 429 with no Retry-After), as vLLM's
server and most gateways; ``--known``: the judge is told the limit (judge.max_requests_per_minute = ``--rpm``).

Prints, as its last line, JSON with goodput_ratio (answered requests per second over the allowed rate, from the
first request to the last answer; target >= 0.9) and refused_share (429s over all requests; target <= 0.05),
besides the counts and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in tests/

from tests.openai_api import ChatAPIServer, prefer_the_longer  # noqa: E402

from polypref.config import load_config  # noqa: E402
from polypref.items import load_items, make_pairs  # noqa: E402
from polypref.judges import make_judge  # noqa: E402
from polypref.population import load_spec, sample_population  # noqa: E402
from polypref.records import UnitBatch  # noqa: E402


def units(n: int, seed: int = 0) -> UnitBatch:
    spec = load_spec("gss_spending")
    pairs = make_pairs(load_items("gss_spending", spec))
    personas = sample_population(spec, -(-n // (len(pairs) * 2)), "proportional", seed).personas
    return UnitBatch.persona_major(personas, pairs, samples=1).take(list(range(n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=int, default=1200, help="Requests per minute each endpoint allows")
    parser.add_argument("--n", type=int, default=600, help="Judgments to make")
    parser.add_argument("--concurrency", type=int, default=16, help="judge.concurrency (where slow start begins)")
    parser.add_argument("--endpoints", type=int, default=1, help="Endpoints of the fleet, each with its own budget")
    parser.add_argument("--no-headers", action="store_true", help="The server sends no x-ratelimit-* headers")
    parser.add_argument("--known", action="store_true", help="Tell the judge the limit (max_requests_per_minute)")
    args = parser.parse_args()

    servers = [
        ChatAPIServer(reply=prefer_the_longer, rpm=args.rpm, rate_headers=not args.no_headers)
        for _ in range(args.endpoints)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = [s.base_url for s in servers]
    config = load_config(
        None,
        [
            "judge.backend=openai",
            "judge.model=served-model",
            f"judge.base_url={urls[0] if len(urls) == 1 else '[' + ', '.join(urls) + ']'}",
            "judge.api_key_env=null",
            f"judge.micro_batch={args.n}",
            f"judge.concurrency={args.concurrency}",
            "judge.max_retries=20",
            *([f"judge.max_requests_per_minute={args.rpm}"] if args.known else []),
        ],
    )
    judge = make_judge(config.judge, config.seed)
    batch = units(args.n)
    start = time.monotonic()
    try:
        frames = list(judge.judge(batch))
    finally:
        judge.close()
    seconds = time.monotonic() - start
    answered = sum(len(s.answered_at) for s in servers)
    refused = sum(s.refused for s in servers)
    unanswered = int(sum(f["error"].is_not_null().sum() for f in frames))
    span = max(t for s in servers for t in s.answered_at) - start
    allowed = args.rpm / 60 * args.endpoints
    figures = {
        "rpm": args.rpm,
        "endpoints": args.endpoints,
        "headers": not args.no_headers,
        "known_limit": args.known,
        "judgments": args.n,
        "unanswered": unanswered,
        "requests": answered + refused,
        "refused": refused,
        "seconds": round(seconds, 2),
        "allowed_per_s": round(allowed, 2),
        "answered_per_s": round(answered / span, 2),
        "goodput_ratio": round(answered / span / allowed, 4),
        "refused_share": round(refused / (answered + refused), 4),
    }
    print(
        f"{answered} answered, {refused} refused in {seconds:.1f} s: {figures['answered_per_s']}/s of "
        f"{allowed:.1f}/s allowed",
        flush=True,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
