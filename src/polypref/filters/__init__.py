"""Quality filters over judgments. Each returns a drop reason; every dropped row keeps its reason."""

from __future__ import annotations

from polypref.filters.agreement import Agreement
from polypref.filters.base import Filter, FilterChain, apply_filters, reason_counts
from polypref.filters.confidence import Confidence
from polypref.filters.config import FiltersConfig
from polypref.filters.outcome import Indifference, Outcome
from polypref.filters.swap import SwapConsistency
from polypref.filters.validity import Validity


def filters_from_config(config: FiltersConfig) -> FilterChain:
    """Filters of each stage, in the order their reasons take precedence."""
    judgment: list[Filter] = [Validity()]
    if config.swap_consistency:
        judgment.append(SwapConsistency())
    pair: list[Filter] = [Indifference()]
    if config.min_agreement > 0:
        pair.append(Agreement(config.min_agreement))
    if config.min_confidence > 0:
        pair.append(Confidence(config.min_confidence))
    pair.append(Outcome())
    return FilterChain(judgment=tuple(judgment), pair=tuple(pair))


__all__ = ["Filter", "FilterChain", "apply_filters", "filters_from_config", "reason_counts"]
