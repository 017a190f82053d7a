"""How much our judge layer costs over the raw engine, and how well persona-major order reuses the prefix cache.

    python benchmarks/judge_overhead.py --backend vllm --model PATH [--n 512] [--cpu]
    python benchmarks/judge_overhead.py --backend openai --base-url URL --model NAME [--n 512]

vllm: the same N judgment prompts (default GSS population and items, persona-major) go through raw
``LLM.chat`` and through polypref's judge over llms/vllm.py (rendering, structured decoding, parsing) in one
process, with the prefix cache reset before each run; then the raw run is repeated in shuffled order. Last line:
JSON with raw_per_s, ours_per_s, ratio, prefix_cache_hit_rate and prefix_cache_hit_rate_shuffled.
openai: N judgments through the OpenAI judge; last line: JSON with ours_per_s, mean_in_flight, concurrency
(the time-averaged adaptive limit) and in_flight_ratio.
--cpu applies the settings vLLM's CPU build needs for the tiny test model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # the JSON result must stay the last line

from polypref.config import load_config
from polypref.items import load_items, make_pairs
from polypref.judges import make_judge
from polypref.population import load_spec, sample_population
from polypref.records import UnitBatch

CPU = [
    "judge.dtype=float32",
    "judge.enforce_eager=true",
    "judge.kv_cache_memory_bytes=536870912",
    "judge.max_model_len=4096",
    "judge.engine_kwargs={enable_chunked_prefill: false, max_num_batched_tokens: 8192, disable_log_stats: false}",
]


def units(n: int, seed: int = 0) -> UnitBatch:
    spec = load_spec("gss_spending")
    pairs = make_pairs(load_items("gss_spending", spec))
    personas = sample_population(spec, -(-n // (len(pairs) * 2)), "proportional", seed).personas
    batch = UnitBatch.persona_major(personas, pairs, samples=1)
    return batch.take(list(range(n)))


def bench_vllm(args: argparse.Namespace) -> dict:
    # no invalid-output retries: the raw run cannot retry, so they would count as our overhead
    overrides = [
        "judge.backend=vllm",
        f"judge.model={args.model}",
        f"judge.micro_batch={args.n}",
        f"judge.max_tokens={args.max_tokens}",
        "judge.max_invalid_retries=0",
        *(CPU if args.cpu else ["judge.engine_kwargs={disable_log_stats: false}"]),
        *args.set,
    ]
    config = load_config(None, overrides)
    judge = make_judge(config.judge, config.seed)
    batch = units(args.n)
    messages = [judge.messages(u) for u in batch]
    llm = judge.llm

    def raw(msgs: list) -> float:
        params = [
            judge._sampling_params(
                temperature=0.0, max_tokens=args.max_tokens, seed=i, structured_outputs=judge._structure
            )
            for i in range(len(msgs))
        ]
        llm.reset_prefix_cache()
        start = time.perf_counter()
        llm.chat(msgs, params, use_tqdm=False)
        return time.perf_counter() - start

    def hit_rate(run) -> tuple[float, float]:
        q0, h0 = judge.llm.prefix_cache_counters()
        seconds = run()
        q1, h1 = judge.llm.prefix_cache_counters()
        return seconds, (h1 - h0) / max(q1 - q0, 1)

    raw(messages[: min(32, len(messages))])  # warm-up: compile grammars, fill allocator pools
    raw_s, _ = hit_rate(lambda: raw(messages))
    llm.reset_prefix_cache()

    frames: list = []

    def ours() -> float:
        start = time.perf_counter()
        frames.extend(judge.judge(batch))
        return time.perf_counter() - start

    ours_s, rate = hit_rate(ours)
    invalid = sum(int(f["error"].is_not_null().sum()) for f in frames)
    shuffled = messages[:]
    random.Random(0).shuffle(shuffled)
    _, rate_shuffled = hit_rate(lambda: raw(shuffled))
    judge.close()
    return {
        "n": args.n,
        "invalid": invalid,
        "raw_per_s": round(args.n / raw_s, 2),
        "ours_per_s": round(args.n / ours_s, 2),
        "ratio": round(raw_s / ours_s, 3),
        "prefix_cache_hit_rate": round(rate, 3),
        "prefix_cache_hit_rate_shuffled": round(rate_shuffled, 3),
    }


def bench_openai(args: argparse.Namespace) -> dict:
    overrides = [
        "judge.backend=openai",
        f"judge.model={args.model}",
        f"judge.base_url={args.base_url}",
        f"judge.micro_batch={args.n}",
        f"judge.max_tokens={args.max_tokens}",
        f"judge.concurrency={args.concurrency}",
        f"judge.max_concurrency={args.concurrency}",
        *args.set,
    ]
    if not any(s.startswith("judge.api_key_env") for s in args.set):
        overrides.append("judge.api_key_env=null")
    config = load_config(None, overrides)
    judge = make_judge(config.judge, config.seed)
    batch = units(args.n)
    judge.llm.limiter.start_clock()
    start = time.perf_counter()
    frames = list(judge.judge(batch))
    seconds = time.perf_counter() - start
    invalid = sum(f["error"].is_not_null().sum() for f in frames)
    mean, limit = judge.llm.limiter.mean_in_flight(), judge.llm.limiter.mean_limit()
    return {
        "n": args.n,
        "invalid": int(invalid),
        "ours_per_s": round(args.n / seconds, 2),
        "mean_in_flight": round(mean, 2),
        "concurrency": round(limit, 2),
        "in_flight_ratio": round(mean / limit, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["vllm", "openai"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cpu", action="store_true", help="vLLM CPU build settings (tiny test model)")
    parser.add_argument("--set", action="append", default=[], help="Extra config override, key.path=value")
    args = parser.parse_args()
    result = bench_vllm(args) if args.backend == "vllm" else bench_openai(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
