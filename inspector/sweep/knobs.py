"""Which QuantConfig fields a sweep varies, and to what.

Knobs are enumerated from the QuantConfig dataclass itself, so a field added later is swept without
touching this module: an integer `*_bits` field the table below does not know is lowered by 2 bits
and raised by 4 (a setting the config rejects becomes a failed point with its error, not a crash);
a boolean is toggled. Fields that are not precision choices (register and message widths of the
hardware, where the embedding and LM head run, how much calibration text is read) are never swept,
nor are fields of other types the table does not know (they are listed in the sweep's metadata).

For each knob the table gives a *lower* setting (cheaper, less precise), the *most precise*
setting the hardware allows, a ladder of settings the bit-width search walks down, and whether the
knob can differ per layer. A knob is per-layer only if changing it leaves the scales the layers hand
to each other unchanged (the residual stream's width and the scale rounding change them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from inspector.quant import messaging as msg
from inspector.quant.config import QuantConfig

NOT_KNOBS = frozenset({"register_bits", "message_bits", "calibration_tokens", "embedding_on_host", "lm_head_on_host"})
# Messaging thresholds the search walks up (codes; 1 sends what 0 sends, so the ladder skips it).
VTH_RUNGS = (0, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@dataclass(frozen=True)
class Knob:
    name: str
    lower: Any
    precise: Any
    minimum: Any = None  # the lowest setting the search may reach (bit widths only)
    per_layer: bool = True
    rungs: tuple[int, ...] = ()  # thresholds: the search walks *up* these (a higher vth is cheaper, less precise)

    @property
    def searchable(self) -> bool:
        return self.minimum is not None or bool(self.rungs)

    def ladder(self, current: Any) -> Any | None:
        """The next setting below `current` for the search, or None at the bottom.

        Wide fields (above 12 bits) step by 4 bits, middle ones by 2, narrow ones (8 and below) by
        1: the loss curve is flat up there and steep down here, and each step is a search round.
        A threshold steps to the next higher rung.
        """
        if self.rungs:
            return next((r for r in self.rungs if r > current), None)
        if self.minimum is None or not isinstance(current, int) or isinstance(current, bool):
            return None
        step = 4 if current > 12 else 2 if current > 8 else 1
        nxt = current - step
        return nxt if nxt >= self.minimum else None


KNOB_TABLE: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("act_bits", 6, 16, minimum=3),
        Knob("residual_bits", 6, 16, minimum=3, per_layer=False),
        Knob("spike_bits", 6, 16, minimum=3),
        Knob("internal_bits", 10, 16, minimum=6),
        Knob("state_bits", 16, 24, minimum=8),
        Knob("gate_frac_bits", 8, 16, minimum=4),
        Knob("lut_bits", 10, 24, minimum=6),
        Knob("norm_frac_bits", 10, 24, minimum=6),
        Knob("norm_weight_frac_bits", 6, 16, minimum=3),
        Knob("multiplier_bits", 8, 24, minimum=6),
        Knob("accumulator_bits", 16, 32, minimum=12),
        Knob("pow2_scales", True, False, per_layer=False),
        Knob("state_headroom", 1.0, 4.0),
    )
}


def messaging_knob(base: QuantConfig, name: str) -> Knob | None:
    """A messaging field as a knob, or None when it would change nothing.

    Modes: sensitivity tries `delta` (lower: fewer messages) against `dense`. Thresholds and
    cum_error only matter for a group that is not dense, so they are knobs only then; the search
    walks a threshold up `VTH_RUNGS`. Messaging is the same in every layer (not per-layer).
    """
    if name in msg.MODE_FIELDS:
        return Knob(name, msg.DELTA, msg.DENSE, per_layer=False)
    if name in msg.VTH_FIELDS:
        group = name.removeprefix("vth_")
        if msg.setting(base, group).mode == msg.DENSE:
            return None
        return Knob(name, 8, 0, per_layer=False, rungs=VTH_RUNGS)
    if name == "messaging_cum_error":
        return Knob(name, not base.messaging_cum_error, False, per_layer=False) if msg.any_stateful(base) else None
    raise KeyError(name)


def knobs(base: QuantConfig | None = None) -> tuple[list[Knob], list[str]]:
    """(knobs to sweep, fields skipped because no settings are known for them)."""
    base = base or QuantConfig()
    found, skipped = [], []
    for field in dataclasses.fields(base):
        if field.name in NOT_KNOBS:
            continue
        if field.name in msg.MESSAGING_FIELDS:
            knob = messaging_knob(base, field.name)
            (found if knob is not None else skipped).append(knob or field.name)
            continue
        if field.name in KNOB_TABLE:
            found.append(KNOB_TABLE[field.name])
            continue
        value = getattr(base, field.name)
        if isinstance(value, bool):
            found.append(Knob(field.name, not value, value, per_layer=False))
        elif isinstance(value, int) and field.name.endswith("_bits"):
            found.append(Knob(field.name, value - 2, value + 4, minimum=max(2, value - 8), per_layer=False))
        else:
            skipped.append(field.name)
    return found, skipped
