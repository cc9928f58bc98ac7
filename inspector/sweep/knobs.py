"""Which QuantConfig fields a sweep varies, and to what: read from each field's `FieldInfo.sweep`.

A field declares how sweeps vary it where it is declared (`inspector.quant.config`): its *lower*
setting (cheaper, less precise), its *most precise* setting, the ladder the bit-width search walks
down (or, for thresholds, up), and whether it can differ per layer. Fields without sweep settings
(the message width of the hardware, the scale rule, how much calibration text is read) are never
swept; they are listed in the sweep's metadata. Messaging fields are knobs only where they change
something (a threshold of a dense group changes nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from inspector.quant import messaging as msg
from inspector.quant.config import VTH_RUNGS, QuantConfig, field_infos

__all__ = ["VTH_RUNGS", "Knob", "knob_fields", "knobs", "messaging_knob"]


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


def knob_fields(cls: type = QuantConfig) -> dict[str, Knob]:
    """Every field that declares sweep settings, as a knob (whatever the base config)."""
    return {
        name: Knob(name, s.lower, s.precise, s.minimum, s.per_layer, s.rungs)
        for name, info in field_infos(cls).items()
        if (s := info.sweep) is not None
    }


def messaging_knob(base: QuantConfig, name: str) -> Knob | None:
    """A messaging field as a knob, or None when it would change nothing.

    Modes: sensitivity tries `delta` (lower: fewer messages) against `dense`. Thresholds and
    cum_error only matter for a group that is not dense, so they are knobs only then; the search
    walks a threshold up `VTH_RUNGS`. Messaging is the same in every layer (not per-layer).
    """
    knob = knob_fields(type(base))[name]
    if name in msg.MODE_FIELDS:
        return knob
    if name in msg.VTH_FIELDS:
        return None if msg.setting(base, name.removeprefix("vth_")).mode == msg.DENSE else knob
    if name == "messaging_cum_error":
        return dataclasses.replace(knob, lower=not base.messaging_cum_error) if msg.any_stateful(base) else None
    raise KeyError(name)


def knobs(base: QuantConfig | None = None) -> tuple[list[Knob], list[str]]:
    """(knobs to sweep, fields not swept: no sweep settings, or messaging settings that change nothing here)."""
    base = base or QuantConfig()
    declared = knob_fields(type(base))
    found, skipped = [], []
    for field in dataclasses.fields(base):
        knob = declared.get(field.name)
        if knob is not None and field.name in msg.MESSAGING_FIELDS:
            knob = messaging_knob(base, field.name)
        (found if knob is not None else skipped).append(knob or field.name)
    return found, skipped
