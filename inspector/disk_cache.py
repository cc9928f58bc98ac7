"""The app's one cache directory on disk (measured activity, calibration results)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LOIHI_INSPECTOR_CACHE"


def cache_dir() -> Path:
    """Where measurements are kept: $LOIHI_INSPECTOR_CACHE, else ~/.cache/loihi-lm-inspector."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "loihi-lm-inspector")
