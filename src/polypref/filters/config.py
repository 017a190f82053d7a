"""The ``filters`` and ``adaptive`` sections of the build config."""

from __future__ import annotations

from pydantic import Field

from polypref.strict import StrictModel


class FiltersConfig(StrictModel):
    swap_consistency: bool = Field(True, description="Drop judgments whose AB and BA verdicts disagree")
    min_agreement: float = Field(0.75, ge=0, le=1, description="Min share of samples agreeing with majority")
    min_confidence: float = Field(0.6, ge=0, le=1, description="Min judge confidence (0-1)")


class AdaptiveConfig(StrictModel):
    """Adaptive self-consistency: ``judge.samples`` becomes a budget, spent only where the first samples leave a
    (persona, pair) undecided (filters/sequential.py). Not part of the judge's identity: sample k is the same
    judgment whether the rule asked for it or a fixed ``samples`` did, so stored answers serve both."""

    enabled: bool = Field(
        False,
        description="Judge sample 0 (both orders) of every (persona, pair), then further samples only for those "
        "still undecided, up to judge.samples (the budget)",
    )
    min_lead: int = Field(
        1,
        ge=1,
        le=64,
        description="Stop asking once the filters would keep the (persona, pair) and its chosen side leads the "
        "other by this many samples' votes (a sequential test's boundary: 2 is stricter and costs more calls)",
    )
    min_samples: int = Field(
        1, ge=1, le=64, description="Samples every (persona, pair) gets before it may stop (at most judge.samples)"
    )
    stop_confidence: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Stop asking only once the votes' mean stated confidence is at least this, besides the lead: a "
        "lone sample the judge is unsure of gets another",
    )
