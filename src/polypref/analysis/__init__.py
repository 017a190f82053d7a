"""Analyses over a built dataset or its judgments: calibration, the preference-space map."""
