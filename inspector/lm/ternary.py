"""The one copy of a ternary weight matrix that every model shares, and its exact accumulation.

A BitLinear weight at inference is a ternary matrix times one scale (beta = mean|W|). The float model,
the integer model, the core mapper and the Lava synapses all use that same matrix, so it is held once,
as int8 (one byte per weight, where a float32 copy, a float32 "dequantized" copy and an int64 copy would
take sixteen): 370 MB for MMfreeLM-370M, 2.7 GB for 2.7B.

Accumulation is integer arithmetic at hardware speed: activation codes that fit in int8 (the 8-bit
spikes of every BitLinear) go through `torch._int_mm`, an int8 x int8 -> int32 GEMM (oneDNN on CPU),
which is exact (|sum| <= fan_in * 128 < 2^31) and, for one token at a time, several times faster
than a float32 GEMV over a float copy of the weights. Wider codes fall back to float BLAS used as an
exact integer adder (every partial sum below 2^24 in float32, 2^53 in float64), with the int8 matrix
cast for that call only.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

INT8_MIN, INT8_MAX = -128, 127
HISTOGRAM_BINS, HISTOGRAM_SPAN = 120, 4.0
ROWS_PER_CHUNK = 4096  # ternarize works through a matrix in row blocks: no full float64 copy


class NonFiniteWeightError(ValueError):
    """A weight matrix holds NaN or an infinity (found by the beta pass, which sums every |w|)."""


_BITS_TYPE = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # a float dtype's same-width integer view


def _magnitude_threshold(dtype: torch.dtype, beta: float) -> int:
    """The smallest magnitude bit pattern m of `dtype` with round(|w| / beta) >= 1, exactly as the float64
    formula decides it (see `ternarize`); every finite |w| whose bits are >= m is then +-1, the rest 0.

    IEEE floats of one sign order like their bit patterns, and round(w / beta) is monotone in w, so one
    threshold per matrix decides every weight. 16-bit dtypes try all 32,768 magnitudes; wider ones search.
    """
    int_type = _BITS_TYPE[torch.empty((), dtype=dtype).element_size()]
    infinity = int(torch.tensor(float("inf"), dtype=dtype).view(int_type))

    def rounds_to_one(bits: torch.Tensor) -> torch.Tensor:
        return torch.round(bits.to(int_type).view(dtype).double() / beta).clamp(-1, 1) >= 1

    if int_type is torch.int16:
        hits = torch.nonzero(rounds_to_one(torch.arange(infinity, dtype=torch.int32)))
        return int(hits[0]) if hits.numel() else infinity
    lo, hi = 0, infinity  # rounds_to_one(hi) taken as true: no finite magnitude lies at or beyond it
    while lo < hi:
        mid = (lo + hi) // 2
        if bool(rounds_to_one(torch.tensor([mid], dtype=torch.int64))):
            hi = mid
        else:
            lo = mid + 1
    return lo


_WORKSPACE = threading.local()  # per thread: the float64 block of the previous beta sum, reused
WORKSPACE_MAX_ELEMENTS = 1 << 22  # kept between calls up to 32 MB (a 4096-row block of a 1024-wide matrix)


def _float64_workspace(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialized contiguous float64 tensor of `shape`, in memory this thread used for the previous block.

    Why: a fresh 32 MB block is mapped from the system and page-faulted in, then unmapped, for every
    block of every matrix; that costs more than the sum itself (a second or more at 370M). The view
    starts at the buffer's start, so it is laid out (and aligned) as a fresh tensor would be.
    """
    count = math.prod(shape)
    buffer = getattr(_WORKSPACE, "buffer", None)
    if buffer is None or buffer.numel() < count:
        buffer = torch.empty(count, dtype=torch.float64)
        if count <= WORKSPACE_MAX_ELEMENTS:
            _WORKSPACE.buffer = buffer
    return buffer[:count].view(shape)


def _abs_sum_float64(block: torch.Tensor) -> float:
    """sum(|w|) of one row block, summed in float64: bit for bit `block.double().abs().sum()`.

    The same float64 tensor is summed (the cast and abs are exact; same shape, contiguous), only written
    into a reused workspace (`_float64_workspace`) and made absolute in place, without temporaries.
    """
    work = _float64_workspace(tuple(block.shape))
    work.copy_(block)
    return float(work.abs_().sum())


def ternarize(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Absmean ternary quantization (`weight_quant` in fusedbitnet.py): (int8 {-1,0,1}, beta = mean|W|).

    The real weight is `ternary * beta`. Every model of the project (float, integer, mapper, Lava)
    uses this one function and shares its result. beta is summed in float64: a float32 sum depends
    on how many threads it is split over, and a ternary value decided by it would too (the integer
    model rounds beta further, to float32, see `inspector.quant.convert`). Row blocks keep the
    float64 temporaries small for the 82 M-weight LM head of a 2.7B model.

    The ternary values are round(w / beta) clipped to [-1, 1] in float64, decided without a float
    copy: one magnitude threshold (`_magnitude_threshold`) compared with the weights' own bit
    patterns (a bf16 weight is read as int16), the sign from the sign bit. The beta sum also checks
    the weights: it is finite exactly when every weight is (`NonFiniteWeightError` otherwise).
    """
    w = w.detach()
    if not w.is_floating_point():
        raise TypeError(f"ternarize expects floating-point weights, got {w.dtype}")
    rows = w.reshape(-1, w.shape[-1]) if w.dim() > 1 else w.reshape(1, -1)
    total = 0.0
    for start in range(0, rows.shape[0], ROWS_PER_CHUNK):
        total += _abs_sum_float64(rows[start : start + ROWS_PER_CHUNK])
    if not math.isfinite(total):
        if not bool(torch.isfinite(w).all()):
            raise NonFiniteWeightError("contains NaN or infinite values")
        raise NonFiniteWeightError("the sum of |w| overflows float64")  # pragma: no cover - beyond any real model
    beta = max(total / max(w.numel(), 1), 1e-5)
    int_type = _BITS_TYPE[w.element_size()]
    threshold = _magnitude_threshold(w.dtype, beta)
    sign_bit = torch.iinfo(int_type).min  # flipping it turns a negative weight's bits into its magnitude's
    bits = rows.view(int_type)
    ternary = torch.empty(rows.shape, dtype=torch.int8)
    for start in range(0, rows.shape[0], ROWS_PER_CHUNK):
        block = bits[start : start + ROWS_PER_CHUNK]
        positive = block >= threshold  # sign bit clear and magnitude at or above the threshold (threshold >= 1)
        negative = (block ^ sign_bit) >= threshold
        torch.sub(positive.to(torch.int8), negative.to(torch.int8), out=ternary[start : start + ROWS_PER_CHUNK])
    return ternary.reshape(w.shape), beta


def latent_histogram(weight: torch.Tensor, beta: float) -> torch.Tensor:
    """Counts of the float weights over HISTOGRAM_BINS bins spanning +-HISTOGRAM_SPAN * beta (outliers in the end bins)."""
    span = HISTOGRAM_SPAN * beta
    clipped = weight.detach().float().clamp(-span, span)
    return torch.histc(clipped, bins=HISTOGRAM_BINS, min=-span, max=span).to(torch.int64)


def _as_2d(codes: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    return codes.reshape(-1, codes.shape[-1]), tuple(codes.shape[:-1])


def int8_matmul(codes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_j values[o, j] * codes[..., j] for int8-range integer codes and an int8 (out, in) matrix, as int64."""
    flat, lead = _as_2d(codes)
    if flat.shape[0] == 0 or flat.shape[1] == 0:
        return torch.zeros(*lead, values.shape[0], dtype=torch.int64)
    out = torch._int_mm(flat.to(torch.int8), values.T)
    return out.to(torch.int64).reshape(*lead, values.shape[0])


def exact_matmul(codes: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The same sum for integer codes of any width (int64 result), exactly."""
    if codes.numel() == 0:
        return torch.zeros(*codes.shape[:-1], values.shape[0], dtype=torch.int64)
    lo, hi = (int(v) for v in torch.aminmax(codes))  # one pass over the codes, not two
    if INT8_MIN <= lo and hi <= INT8_MAX:
        return int8_matmul(codes, values)
    bound = codes.shape[-1] * max(hi, -lo)
    if bound < (1 << 24):
        return (codes.float() @ values.float().T).round().to(torch.int64)
    if bound < (1 << 53):
        return (codes.double() @ values.double().T).round().to(torch.int64)
    raise OverflowError("accumulation bound exceeds exact float64 range")  # pragma: no cover - beyond any real model


@dataclass
class TernaryMatrix:
    """A ternary matrix (`values`, int8 in {-1, 0, 1}, shape (out, in)) and its scale `beta`: W = values * beta."""

    values: torch.Tensor
    beta: float
    # counts of the latent float weights over HISTOGRAM_BINS bins spanning +-HISTOGRAM_SPAN * beta
    # (outliers in the end bins): the Learn tour shows where absmean quantization cuts them. Kept from
    # the float weights when they are at hand anyway (`from_weight` without `reread`); for a loaded
    # checkpoint counted only when first asked for, from the weight read again (`reread`): every
    # other use of the model (the CLI's `run`, any other page) never needs it.
    _histogram: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _reread: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _magnitudes: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, reread: Callable[[], torch.Tensor] | None = None) -> "TernaryMatrix":
        """Ternarize `weight`; `reread` gives the same float weight again later (the histogram is then lazy)."""
        values, beta = ternarize(weight)
        histogram = None if reread is not None else latent_histogram(weight, beta)
        return cls(values.contiguous(), beta, histogram, reread)

    @property
    def latent_histogram(self) -> torch.Tensor | None:
        """The latent weights' histogram (see the field), counted on first use for a loaded checkpoint."""
        if self._histogram is None and self._reread is not None:
            weight = self._reread()
            values, beta = ternarize(weight)
            if beta != self.beta or not torch.equal(values.reshape(self.values.shape), self.values):
                raise ValueError("the weight file changed since the model was loaded: load the model again")
            self._histogram, self._reread = latent_histogram(weight, beta), None
        return self._histogram

    def histogram_edges(self) -> torch.Tensor:
        """Bin edges (HISTOGRAM_BINS + 1) of `latent_histogram`, in weight units."""
        span = HISTOGRAM_SPAN * self.beta
        return torch.linspace(-span, span, HISTOGRAM_BINS + 1, dtype=torch.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    @property
    def nbytes(self) -> int:
        return self.values.numel()

    def accumulate(self, codes: torch.Tensor) -> torch.Tensor:
        """Exact integer accumulation of integer `codes` (..., in) -> int64 (..., out)."""
        return exact_matmul(codes, self.values)

    def synaptic_ops(self, spikes: torch.Tensor) -> torch.Tensor:
        """Per output neuron, how many of its synapses carried a nonzero spike: sum_j [x_j != 0] * [W_oj != 0]."""
        if self._magnitudes is None:  # |W| kept once probes ask for it (one more byte per weight)
            self._magnitudes = self.values.abs()
        active = (spikes != 0).to(torch.int8)
        return int8_matmul(active, self._magnitudes)

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """W = values * beta as a dense float tensor (for training code and tests, not for inference)."""
        return self.values.to(dtype) * self.beta
