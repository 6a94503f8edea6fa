"""Suite-wide settings.

Hypothesis: no per-example deadline. CI and this machine are shared and
noisy, and a slow example is not a failing one; speed lives in
benchmarks (make bench), not in tests.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("graft", deadline=None)
settings.load_profile("graft")
