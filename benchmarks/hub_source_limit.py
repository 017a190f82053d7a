"""Benchmark: ``items.limit`` (the first N rows, read by range requests) from a large Hub dataset, cold (nothing
cached) and warm.

Writes a pairwise dataset (``prompt``, ``chosen``, ``rejected`` texts of realistic lengths, generated in code) of
``--rows`` rows as ``datasets`` shards it (shards <= 500 MB and row groups <= 100 MB uncompressed, content-defined
chunking, page index), commits it to a Hub stub repo ``bench/pairs``, serves the stub in a subprocess
(``python -m tests.hubstub``), and times the whole items path of a build, ``read_items`` (locate, read the
row groups needed, detect the format, convert), in this process with an empty cache (cold) and again (warm). Data
generation and the stub run in other processes, so the peak RSS reported is the reader's alone.

    python benchmarks/hub_source_limit.py [--rows 1000000] [--limit 1000] [--workdir DIR] [--build]

Prints figures; the LAST line is JSON: rows, limit, source_bytes (the repo's files), load_seconds_cold,
load_bytes_cold (body bytes the stub sent for the cold load: footers and row groups read in place, files
downloaded), load_seconds_warm, peak_rss_mb, rss_growth_mb. With ``--build``, also the whole command: ``polypref
build`` (Prefect, 2 personas, the fidelity check off) from the same source with an empty cache, judged by a local
instant OpenAI-compatible server (tests/openai_api.py): build_seconds_to_first_request (command start to the
first judge request), build_seconds_total and build_bytes (what the build downloaded). Needs about 3 GB of disk
per million rows (source, stub copy, cache) in --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROW_GROUP_BYTES = 100 * 1000 * 1000  # datasets.config.MAX_ROW_GROUP_SIZE ("100MB")
SHARD_BYTES = 500 * 1000 * 1000  # datasets.config.MAX_SHARD_SIZE ("500MB")
CDC = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}  # datasets' CDC options
README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
# bench/pairs: synthetic pairwise preferences for the items.limit benchmark
"""


def generate(rows: int, out: Path, seed: int = 0) -> list[Path]:
    """Shards of ``rows`` pairwise rows under ``out/data``; texts are word salad with realistic lengths
    (lognormal: prompts ~190 characters on average, responses ~580)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1 / np.arange(1, 27)
    vocab = ["".join(rng.choice(letters, size=n, p=weights / weights.sum())) for n in rng.integers(2, 10, 5000)]
    zipf = 1 / np.arange(1, len(vocab) + 1) ** 1.1
    words = rng.choice(len(vocab), size=4_000_000, p=zipf / zipf.sum())
    punct = rng.choice(["", "", "", "", "", ",", "."], size=len(words))
    corpus = " ".join(vocab[w] + p for w, p in zip(words, punct, strict=True))
    starts = np.flatnonzero(np.frombuffer(corpus.encode("ascii"), dtype=np.uint8) == ord(" ")) + 1

    def texts(n: int, median: float) -> list[str]:
        lengths = np.clip(rng.lognormal(np.log(median), 0.7, n), 20, 6000).astype(np.int64)
        begin = starts[rng.integers(0, len(starts) - 800, n)]
        return [corpus[b : b + n_] for b, n_ in zip(begin.tolist(), lengths.tolist(), strict=True)]

    batch = 50_000
    sample = pa.table({"prompt": texts(2000, 150), "chosen": texts(2000, 450), "rejected": texts(2000, 450)})
    row_bytes = sample.nbytes / sample.num_rows
    group_rows = max(1, int(ROW_GROUP_BYTES / row_bytes))
    shard_rows = max(group_rows, int(SHARD_BYTES / row_bytes) // group_rows * group_rows)
    shards = -(-rows // shard_rows)
    (out / "data").mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shards):
        path = out / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        todo = min(shard_rows, rows - shard * shard_rows)
        with pq.ParquetWriter(
            path, sample.schema, use_content_defined_chunking=CDC, write_page_index=True, compression="snappy"
        ) as writer:
            pending = None
            while todo > 0:
                n = min(batch, todo)
                table = pa.table({"prompt": texts(n, 150), "chosen": texts(n, 450), "rejected": texts(n, 450)})
                pending = table if pending is None else pa.concat_tables([pending, table])
                while pending.num_rows >= group_rows:
                    writer.write_table(pending.slice(0, group_rows), row_group_size=group_rows)
                    pending = pending.slice(group_rows)
                todo -= n
            if pending is not None and pending.num_rows:
                writer.write_table(pending, row_group_size=group_rows)
        paths.append(path)
    return paths


def seed_stub(rows: int, workdir: Path) -> None:
    """Generate the shards and commit them to the stub under workdir/stub (run in a child process)."""
    sys.path.insert(0, str(REPO))
    import pyarrow.parquet as pq
    from tests.hubstub import HubStub

    t0 = time.perf_counter()
    paths = generate(rows, workdir / "source")
    t1 = time.perf_counter()
    files = {f"data/{p.name}": p for p in paths}
    HubStub(workdir / "stub").add_commit("bench/pairs", {"README.md": README, **files}, replace=True)
    meta = [pq.ParquetFile(p).metadata for p in paths]
    size = sum(p.stat().st_size for p in paths)
    print(
        f"generated {sum(m.num_rows for m in meta):,} rows in {len(paths)} shards, "
        f"{sum(m.num_row_groups for m in meta)} row groups, {size / 1e6:.0f} MB on disk: {t1 - t0:.1f} s; "
        f"committed to the stub: {time.perf_counter() - t1:.1f} s",
        flush=True,
    )
    shutil.rmtree(workdir / "source")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def whole_build(url: str, workdir: Path, limit: int, requests: Any) -> dict[str, float | int | None]:
    """``polypref build`` from the stub's source with an empty cache, judged by a local instant server."""
    sys.path.insert(0, str(REPO))  # the test server lives in tests/
    from tests.openai_api import ChatAPIServer, judge_settings, prefer_the_longer

    server = ChatAPIServer(reply=prefer_the_longer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = [
        *judge_settings(server),
        "items.source=hf://datasets/bench/pairs",
        f"items.limit={limit}",
        "population.size=2",
        "fidelity.check=false",
    ]
    shutil.rmtree(workdir / "hf", ignore_errors=True)
    shutil.rmtree(workdir / "build", ignore_errors=True)
    command = [sys.executable, "-m", "polypref", "build", "--out", str(workdir / "build"), "--no-progress"]
    sent = requests().get("bytes", 0)
    start = time.monotonic()
    done = subprocess.run(
        [*command, *(f"--set={s}" for s in settings)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    total = time.monotonic() - start
    server.shutdown()
    if done.returncode != 0:
        sys.exit(f"build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(done.stdout.strip().splitlines()[0])
    return {
        "build_seconds_to_first_request": round(server.received_at[0] - start, 2) if server.received_at else None,
        "build_seconds_total": round(total, 2),
        "build_requests": len(server.received_at),
        "build_bytes": requests().get("bytes", 0) - sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed at the end")
    parser.add_argument("--build", action="store_true", help="also time a whole polypref build from the source")
    parser.add_argument("--seed-stub", action="store_true", help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.seed_stub:
        seed_stub(args.rows, args.workdir)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hub-bench-"))
    keep = args.workdir is not None
    stub = None
    try:
        if not (workdir / "stub" / "datasets" / "bench" / "pairs" / "refs.json").exists():
            workdir.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [sys.executable, __file__, "--seed-stub", "--rows", str(args.rows), "--workdir", str(workdir)],
                check=True,
            )
        stub = subprocess.Popen(
            [sys.executable, "-m", "tests.hubstub", "--root", str(workdir / "stub")],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = stub.stdout.readline().strip()
        shutil.rmtree(workdir / "hf", ignore_errors=True)
        os.environ.update(
            HF_ENDPOINT=url,
            HF_HOME=str(workdir / "hf"),
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        os.environ.pop("HF_TOKEN", None)
        # huggingface_hub reads the environment above at import: import it only now (and everything the load
        # imports, so that the RSS growth below is the load's own)
        import httpx2
        import huggingface_hub  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        from polypref.config import ItemsConfig
        from polypref.items import read_items
        from polypref.population import load_spec

        spec = load_spec("gss_spending")
        peaks: list[float] = []

        def load() -> tuple[float, int]:
            """The whole items path a build takes: locate (and download), sample, read, detect, convert."""
            t0 = time.perf_counter()
            loaded = read_items(ItemsConfig(source="hf://datasets/bench/pairs", limit=args.limit), spec)
            seconds = time.perf_counter() - t0
            peaks.append(peak_mb())
            assert len(loaded.items) == args.limit and loaded.format == "pairwise"
            return seconds, len(loaded.source.files)

        def requests() -> dict[str, int]:
            return httpx2.get(f"{url}/_stub/requests").json()

        repo = workdir / "stub" / "datasets" / "bench" / "pairs"
        source_bytes = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())  # the data, and a README
        before = rss_mb()
        cold, shards = load()
        after_cold = requests()
        warm, _ = load()
        after_warm = requests()
        peak = peak_mb()
        warm_requests = {k: v - after_cold.get(k, 0) for k, v in after_warm.items() if v - after_cold.get(k, 0)}
        built = whole_build(url, workdir, args.limit, requests) if args.build else {}
        print(f"source: {args.rows:,} rows in {shards} Parquet shards; limit {args.limit}")
        print(f"cold (download + read): {cold:.2f} s; requests {after_cold}")
        print(f"warm (from the cache): {warm:.2f} s; requests {warm_requests}")
        print(
            f"RSS before the first load {before:.0f} MB; peak after the cold load {peaks[0]:.0f} MB, "
            f"at the end {peak:.0f} MB; current {rss_mb():.0f} MB"
        )
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "limit": args.limit,
                    "source_bytes": source_bytes,
                    "load_seconds_cold": round(cold, 3),
                    "load_bytes_cold": after_cold.get("bytes"),
                    "load_seconds_warm": round(warm, 3),
                    "peak_rss_mb": round(peak, 1),
                    "rss_growth_mb": round(peak - before, 1),
                    **built,
                }
            )
        )
    finally:
        if stub is not None:
            stub.terminate()
            stub.wait(timeout=10)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
