"""Hypothesis profiles: random exploration on developers' machines, a fixed sequence of examples in CI.

CI must judge the change it is given, not a counterexample that a new random draw happened to find in code
the change never touched; developers' runs keep exploring and report what they find.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
