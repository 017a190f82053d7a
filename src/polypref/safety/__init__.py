"""Keeping credentials out of every output: redaction of secrets, public provenance of settings."""
