"""How much per-persona signal a build carries: `polypref evaluate` on fresh builds of two item sets.

    python benchmarks/personalization.py [--test-share S] [--seed 0]

Builds, with `polypref build` into a temporary folder, the shipped default config (simulated judge, GSS spending
personas and items: 18 topics x 2 prompts x 3 pairs) and the same with the Fair-PP-style templated items
(`polypref template-items gss_values`: 4 topics x 3 groups x 3 value dimensions x 2 templates, one pair each),
runs `polypref evaluate` on each (the build's own test split, or ``--test-share``), prints each table and then,
as the last line, one JSON object {"default": figures, "gss_values": figures} (accuracy of the global, group
and group-attribute majorities, k-shot nearest personas, the simulator's truth and the headroom, on held-out
personas; see src/polypref/analysis/evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

POLYPREF = [sys.executable, "-m", "polypref"]


def _evaluate(folder: Path, build: list[str], args: argparse.Namespace) -> dict:
    out, figures = folder / "out", folder / "evaluate.json"
    subprocess.run([*POLYPREF, "build", "--out", str(out), *build], check=True, stdout=sys.stderr)
    evaluated = [*POLYPREF, "evaluate", str(out), "--json", str(figures), "--seed", str(args.seed)]
    if args.test_share is not None:
        evaluated += ["--test-share", str(args.test_share)]
    subprocess.run(evaluated, check=True, stdout=sys.stderr)
    result = json.loads(figures.read_text())
    result.pop("folder")  # a temporary path
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-share", type=float, default=None, help="default: the build's own test split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "default").mkdir()
        results["default"] = _evaluate(root / "default", [], args)
        (root / "values").mkdir()
        items = root / "values" / "gss_values.jsonl"
        template = ["template-items", "gss_values", "--out", str(items), "--population", "gss_spending"]
        subprocess.run([*POLYPREF, *template], check=True, stdout=sys.stderr)
        results["gss_values"] = _evaluate(root / "values", ["--set", f"items.source={items}"], args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
