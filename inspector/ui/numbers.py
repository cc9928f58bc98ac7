"""Number boxes whose limits are checked by us, not by the browser.

Why: `st.number_input(min_value=..., max_value=...)` lets the browser refuse an out-of-range number
silently: the box turns red and the script keeps receiving the old value, so the figures go on
showing a setting that is no longer on screen. Here the box has no limits, every typed value
reaches the script, and a value outside the limits is said next to the box and gives None, so the
caller runs nothing on it.
"""

from __future__ import annotations

import streamlit as st


def number_box(label: str, lo: float, hi: float, default: float, key: str, step: float | None = None, **kwargs) -> float | None:
    """The value of a number box in lo..hi (int when the limits and default are ints), or None after an error below it."""
    whole = all(isinstance(v, int) for v in (lo, hi, default)) and (step is None or isinstance(step, int))
    value = st.number_input(f"{label}", value=default, step=step if step is not None else 1 if whole else None, key=key, **kwargs)
    if value is None or not lo <= value <= hi:
        st.error(f"{label}: must be between {lo:,} and {hi:,}; {value if value is not None else 'nothing'} is not. "
                 "Nothing is started until it is fixed.")
        return None
    return int(value) if whole else float(value)
