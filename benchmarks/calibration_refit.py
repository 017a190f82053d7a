"""Refit the shipped calibrator (data/calibration/simulated.json) on simulated builds over a grid of judges.

usage: python benchmarks/calibration_refit.py --fit | --check

For an LLM judge, whose behaviour polypref cannot know, the calibrator is fitted over a grid of the simulator's
noise, position bias, temperature, tie margin, confidence noise, samples and filters. ``--fit`` writes the file;
``--check`` exits 1 when it is not what a refit would write (rerun after changing the default items, the
simulator or the features). Several minutes on 2 cores.
"""

from __future__ import annotations

import sys

import polars as pl

from polypref import assets
from polypref.analysis.calibration import SHIPPED, fit
from polypref.pipeline.calibration import FILTER_NAMES, FILTERS, PERSONAS, SEED, simulated_rows

# (noise, position_bias, temperature): the simulator's range, from a near-perfect judge to a coin-flipping,
# strongly position-biased one; each with 1 and 3 samples, and with the default and with permissive filters.
GRID: tuple[tuple[float, float, float], ...] = tuple(
    (noise, bias, temperature)
    for noise in (0.0, 0.1, 0.2, 0.4)
    for bias in (0.0, 0.5, 1.0, 2.0)
    for temperature in (0.15, 0.6, 1.5)
)
SAMPLES = (1, 3)
CONFIDENCE_NOISE = (0.5, 1.0, 2.0)
TIE_MARGINS = (0.0, 0.05)  # a judge that never says tie, and one that says it when the persona is indifferent
ABOUT = {
    "judge": "the simulated judge on the gss_spending population and items",
    "personas": PERSONAS,
    "seed": SEED,
    "noise": sorted({g[0] for g in GRID}),
    "position_bias": sorted({g[1] for g in GRID}),
    "temperature": sorted({g[2] for g in GRID}),
    "tie_margin": list(TIE_MARGINS),
    "confidence_noise": list(CONFIDENCE_NOISE),
    "samples": list(SAMPLES),
    "filters": FILTER_NAMES,
}


def training_rows() -> pl.DataFrame:
    frames = []
    for i, (noise, bias, temperature) in enumerate(GRID):
        for samples in SAMPLES:
            for filters in FILTERS:
                judge = [
                    f"judge.noise={noise}",
                    f"judge.position_bias={bias}",
                    f"judge.temperature={temperature}",
                    f"judge.samples={samples}",
                    # how noisy the stated confidence is varies over the grid, not as a fourth axis (cost)
                    f"judge.confidence_noise={CONFIDENCE_NOISE[(i + i // 3) % len(CONFIDENCE_NOISE)]}",
                    f"judge.tie_margin={TIE_MARGINS[(i + samples) % len(TIE_MARGINS)]}",
                ]
                frames.append(simulated_rows([*judge, *filters]))
    return pl.concat(frames)


def main(argv: list[str]) -> int:
    """--fit: refit on simulated builds and write the shipped file; --check: exit 1 when it is not current."""
    if not {"--fit", "--check"} & set(argv):
        print("usage: python benchmarks/calibration_refit.py --fit | --check", file=sys.stderr)
        return 2
    text = fit(training_rows(), ABOUT).to_json()
    path = assets.path("data", *SHIPPED)
    if "--fit" in argv:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if not path.exists() or path.read_text() != text:
        print(f"{path} is out of date; run python benchmarks/calibration_refit.py --fit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
