"""Test-wide settings."""

from __future__ import annotations

import os

from hypothesis import settings

# In CI, property tests draw the same examples every run, so a red build always points at a change;
# on developers' machines they keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
