"""How much per-persona signal the default build carries: `polypref evaluate` on a fresh default build.

    python benchmarks/personalization.py [--test-share 0.1] [--seed 0]

Builds the shipped default config (simulated judge, GSS spending personas and items) with `polypref build` into
a temporary folder, runs `polypref evaluate` on it, prints its table and then, as the last line, its JSON
(accuracy of the global, group and group-attribute majorities, k-shot nearest personas, the simulator's truth
and the headroom, on held-out personas; see src/polypref/analysis/evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    polypref = [sys.executable, "-m", "polypref"]
    with tempfile.TemporaryDirectory() as tmp:
        out, figures = Path(tmp) / "out", Path(tmp) / "evaluate.json"
        subprocess.run([*polypref, "build", "--out", str(out)], check=True, stdout=sys.stderr)
        evaluated = [*polypref, "evaluate", str(out), "--json", str(figures), "--test-share", str(args.test_share)]
        subprocess.run([*evaluated, "--seed", str(args.seed)], check=True, stdout=sys.stderr)
        result = json.loads(figures.read_text())
    result.pop("folder")  # a temporary path
    print(json.dumps(result))


if __name__ == "__main__":
    main()
