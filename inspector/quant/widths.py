"""The register width and code range of each site, read from a QuantConfig through the layer schema.

Why here and not in the schema: the schema names each site's width field; only the quantization
layer knows what a QuantConfig holds (the gate's unsigned fixed point).
"""

from __future__ import annotations

from inspector.quant.config import QuantConfig
from inspector.schema import GATE_WIDTH, SITE_OF


def site_bits(site: str, qc: QuantConfig) -> int:
    """The register width a site's codes live in (as `inspector.quant.convert` assigns them)."""
    entry = SITE_OF.get(site)
    if entry is None:
        raise KeyError(f"unknown site {site!r}")
    if entry.width == GATE_WIDTH:
        return qc.gate_frac_bits + 1  # unsigned fixed point in [0, 1]: one integer bit above the fraction
    return getattr(qc, entry.width)


def site_range(site: str, qc: QuantConfig) -> tuple[int, int]:
    """The integer range a site's codes are saturated to: signed, or [0, 1] in fixed point for the gate."""
    bits = site_bits(site, qc)
    if SITE_OF[site].width == GATE_WIDTH:
        return 0, 1 << qc.gate_frac_bits
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
