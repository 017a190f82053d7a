"""Quality filters over judgments. Each returns a drop reason; every dropped row keeps its reason."""

from __future__ import annotations

from polypref.config import FiltersConfig
from polypref.filters.agreement import Agreement
from polypref.filters.base import Filter, apply_filters, reason_counts
from polypref.filters.confidence import Confidence
from polypref.filters.outcome import Outcome
from polypref.filters.swap import SwapConsistency
from polypref.filters.validity import Validity


def filters_from_config(config: FiltersConfig) -> list[Filter]:
    """Filters in the order their reasons take precedence."""
    chain: list[Filter] = [Validity()]
    if config.swap_consistency:
        chain.append(SwapConsistency())
    if config.min_agreement > 0:
        chain.append(Agreement(config.min_agreement))
    if config.min_confidence > 0:
        chain.append(Confidence(config.min_confidence))
    chain.append(Outcome())
    return chain


__all__ = ["Filter", "apply_filters", "filters_from_config", "reason_counts"]
