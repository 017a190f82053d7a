"""Persona fidelity: personas answer the survey's own questions, scored against the survey's distributions."""

from polypref.fidelity.check import FidelityReport, Score, Scores, check

__all__ = ["FidelityReport", "Score", "Scores", "check"]
