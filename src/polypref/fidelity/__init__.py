"""Persona fidelity: personas answer the survey's own questions, scored against the survey's distributions."""

from polypref.fidelity.check import check
from polypref.fidelity.results import FidelityReport, Score, Scores

__all__ = ["FidelityReport", "Score", "Scores", "check"]
