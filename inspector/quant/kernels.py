"""Integer kernels of the emulated neuro-cores: every operation the integer model performs.

All tensors are `torch.int64` holding integers; every function is exact and deterministic. The
synaptic accumulation lives with the weights it reads, in `inspector.lm.ternary`. Saturation is never
silent: functions that clip also return the mask of what they clipped (unless asked not to).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

INT = torch.int64


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def round_shift(value: torch.Tensor, shift: int) -> torch.Tensor:
    """value / 2^shift rounded half up (add half, arithmetic shift right); shift < 0 shifts left."""
    if shift > 0:
        return (value + (1 << (shift - 1))) >> shift
    if shift < 0:
        return value << (-shift)
    return value


def round_div(numerator: torch.Tensor, denominator: torch.Tensor | int) -> torch.Tensor:
    """numerator / denominator rounded half up, for positive denominators (floor((2n + d) / 2d))."""
    return torch.div(2 * numerator + denominator, 2 * denominator, rounding_mode="floor")


def saturate(value: torch.Tensor, bits: int, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Clip to a signed `bits`-bit register; also return the mask of clipped elements.

    `clipped=False` skips the mask (None instead): a run nobody probes does not pay for it.
    """
    lo, hi = signed_range(bits)
    mask = (value < lo) | (value > hi) if clipped else None
    return value.clamp(lo, hi), mask


def round_shift_(value: torch.Tensor, shift: int) -> torch.Tensor:
    """`round_shift` in place, on a temporary the caller owns: no new tensor per step."""
    if shift > 0:
        return value.add_(1 << (shift - 1)).bitwise_right_shift_(shift)
    if shift < 0:
        return value.bitwise_left_shift_(-shift)
    return value


def saturate_(value: torch.Tensor, bits: int, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """`saturate` in place, on a temporary the caller owns."""
    lo, hi = signed_range(bits)
    mask = (value < lo) | (value > hi) if clipped else None
    return value.clamp_(lo, hi), mask


def requantize(
    value: torch.Tensor, multiplier: int, shift: int, bits: int, clipped: bool = True
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Integer rescale (value * multiplier / 2^shift, round half up) into a signed `bits`-bit code."""
    return saturate_(round_shift_(value * multiplier, shift), bits, clipped)


def fixed_multiplier(ratio: float, multiplier_bits: int) -> tuple[int, int]:
    """(m, s) with m < 2^multiplier_bits and m / 2^s as close to `ratio` as that width allows.

    This is done once, at conversion time: it turns a ratio of float scales into the integer pair
    the chip uses.
    """
    if not ratio > 0 or not math.isfinite(ratio):
        raise ValueError(f"requantization ratio must be positive and finite, got {ratio}")
    mantissa, exponent = math.frexp(ratio)  # ratio = mantissa * 2^exponent, mantissa in [0.5, 1)
    shift = multiplier_bits - exponent
    multiplier = int(round(mantissa * (1 << multiplier_bits)))
    if multiplier >= (1 << multiplier_bits):  # rounding overflowed the width
        multiplier >>= 1
        shift -= 1
    return multiplier, shift


def isqrt_floor(value: torch.Tensor) -> torch.Tensor:
    """Exact floor(sqrt(value)) for non-negative int64 values below 2^52 (float estimate, then corrected)."""
    root = torch.sqrt(value.double()).floor().to(INT)
    root = torch.where(root * root > value, root - 1, root)
    root = torch.where((root + 1) * (root + 1) <= value, root + 1, root)
    return root


def inv_sqrt_fixed(mean_square: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """floor(2^F / sqrt(m)) exactly, as floor(sqrt(floor(2^(2F) / m))); 0 where m == 0."""
    safe = mean_square.clamp(min=1)
    quotient = torch.div(torch.full_like(safe, 1 << (2 * frac_bits)), safe, rounding_mode="floor")
    return torch.where(mean_square > 0, isqrt_floor(quotient), torch.zeros_like(mean_square))


def inv_sqrt_fixed_int(mean_square: int, frac_bits: int) -> int:
    """`inv_sqrt_fixed` of one Python integer: floor(sqrt(floor(2^(2F) / m))), 0 where m <= 0."""
    return math.isqrt((1 << (2 * frac_bits)) // mean_square) if mean_square > 0 else 0


# Up to this many rows, the per-row inverse RMS is computed in Python integers: one token (the
# generation step) then costs a handful of tensor operations instead of the ~15 that the vectorized
# isqrt needs on a (1, 1) tensor, where each costs far more in dispatch than in arithmetic.
SCALAR_NORM_ROWS = 8


def inverse_rms(codes: torch.Tensor, eps_q: int, frac_bits: int) -> torch.Tensor | int:
    """floor(2^F / sqrt(round(sum(x^2) / n) + eps_q)) per row of the last axis: (..., 1), or an int for one row."""
    n = codes.shape[-1]
    sums = (codes * codes).sum(dim=-1, keepdim=True)
    if sums.numel() <= SCALAR_NORM_ROWS:
        inv = [inv_sqrt_fixed_int((2 * s + n) // (2 * n) + eps_q, frac_bits) for s in sums.flatten().tolist()]
        return inv[0] if len(inv) == 1 else torch.tensor(inv, dtype=INT).reshape(sums.shape)
    return inv_sqrt_fixed(round_div(sums, n) + eps_q, frac_bits)


def rmsnorm_int(
    codes: torch.Tensor,
    weight_q: torch.Tensor,
    eps_q: int,
    frac_bits: int,
    multiplier: int,
    shift: int,
    bits: int,
    clipped: bool = True,
    scaled_gain: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Integer RMSNorm of the last axis into a `bits`-bit code.

    mean = round(sum(x^2) / n) + eps_q; r = floor(2^F / sqrt(mean)); y = x * r * weight_q, then
    requantized by (multiplier, shift). The input scale cancels (RMSNorm is scale-free), so the
    output scale is fixed by the requantization alone.
    """
    if scaled_gain is None:
        return requantize(codes * inverse_rms(codes, eps_q, frac_bits) * weight_q, multiplier, shift, bits, clipped)
    # weight_q * multiplier precomputed: int64 products wrap modulo 2^64, where multiplication is
    # associative, so this is the same integer as ((x * r) * weight_q) * multiplier, one pass fewer.
    value = codes * inverse_rms(codes, eps_q, frac_bits)
    return saturate_(round_shift_(value.mul_(scaled_gain), shift), bits, clipped)


def lut_lookup(codes: torch.Tensor, table: torch.Tensor, code_bits: int) -> torch.Tensor:
    """table[code + 2^(code_bits-1)]: one entry per possible signed input code."""
    return torch.take(table, codes + (1 << (code_bits - 1)))
