"""Benchmark: reading a large pairwise Parquet item source through ``read_items`` (rows decoded, parsed into Items).

Writes, in code, a 100k-row pairwise Parquet file (``prompt``, ``chosen``, ``rejected`` texts) and a conversational
variant (``prompt`` a user turn, ``chosen``/``rejected`` assistant turns, TRL's conversational format), then times
``polypref.items.sources.read_items`` on each, the best of ``--repeat`` runs (what ``polypref validate`` or
``pipeline.plan`` spends loading such a source). ``--profile`` prints a cProfile of one run instead.

    python benchmarks/item_parsing.py [--rows 100000] [--repeat 3] [--workdir DIR] [--profile]

It reads the polypref that ``import polypref`` finds: to time another tree, run it with PYTHONPATH=TREE/src.

Prints one line per variant; the LAST line is JSON: {variant: {"rows", "seconds", "rows_per_second", "cpu_seconds"}}
(each the best of the runs).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path


def _texts(rng: object, count: int, mean_words: int) -> list[str]:
    """``count`` distinct word-salad texts of about ``mean_words`` words (the index keeps each one unique)."""
    import numpy as np

    assert isinstance(rng, np.random.Generator)
    vocab = np.array([f"w{i}" for i in range(2000)])
    lengths = rng.integers(mean_words // 2, mean_words * 3 // 2, count)
    words = rng.choice(vocab, size=int(lengths.sum()))
    cuts = np.cumsum(lengths)[:-1]
    return [f"{index} " + " ".join(chunk) for index, chunk in enumerate(np.split(words, cuts))]


def write_sources(rows: int, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Two pairwise Parquet files of ``rows`` rows: plain texts, and the same texts as conversations."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    prompts, chosen, rejected = (_texts(rng, rows, n) for n in (30, 90, 80))
    paths = {"text": folder / "pairs.parquet", "conversational": folder / "pairs_conversational.parquet"}
    pq.write_table(pa.table({"prompt": prompts, "chosen": chosen, "rejected": rejected}), paths["text"])

    def turns(role: str, texts: list[str]) -> list[list[dict[str, str]]]:
        return [[{"role": role, "content": t}] for t in texts]

    table = {"prompt": turns("user", prompts), "chosen": turns("assistant", chosen)}
    table["rejected"] = turns("assistant", rejected)
    pq.write_table(pa.table(table), paths["conversational"])
    return paths


def read_once(path: Path) -> tuple[int, float, float]:
    """(items read, wall seconds, CPU seconds) for one ``read_items`` of ``path``. CPU time is the steadier figure
    on a machine shared with other work."""
    from polypref.config import ItemsConfig
    from polypref.items.sources import read_items
    from polypref.population import load_spec

    spec = load_spec("gss_spending")
    wall, cpu = time.perf_counter(), time.process_time()
    loaded = read_items(ItemsConfig(source=str(path)), spec)
    return len(loaded.items), time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run of each variant")
    args = parser.parse_args()
    import polypref

    print(f"polypref from {Path(polypref.__file__).parent}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        paths = write_sources(args.rows, Path(folder))
        results = {}
        for variant, path in paths.items():
            if args.profile:
                profile = cProfile.Profile()
                profile.runcall(read_once, path)
                pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
                continue
            runs = [read_once(path) for _ in range(args.repeat)]
            count, seconds, cpu = runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)
            results[variant] = {
                "rows": count,
                "seconds": round(seconds, 3),
                "rows_per_second": round(count / seconds),
                "cpu_seconds": round(cpu, 3),
            }
            print(f"{variant:>15}: {count} rows in {seconds:.2f} s ({count / seconds:,.0f} rows/s), {cpu:.2f} s CPU")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
