"""`ternarize` against the plain float64 formula it implements without a float copy (threshold on the bit patterns)."""

from __future__ import annotations

import math

import pytest
import torch

from inspector.lm.ternary import NonFiniteWeightError, _abs_sum_float64, latent_histogram, ternarize


def plain_ternarize(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """round(w / beta) clipped to [-1, 1] in float64, beta = mean|w| summed in float64 by row blocks of 4096."""
    rows = w.reshape(-1, w.shape[-1]) if w.dim() > 1 else w.reshape(1, -1)
    total = sum(float(rows[s : s + 4096].double().abs().sum()) for s in range(0, rows.shape[0], 4096))
    beta = max(total / max(w.numel(), 1), 1e-5)
    return torch.round(w.double() / beta).clamp(-1, 1).to(torch.int8), beta


def _with_threshold_neighbours(w: torch.Tensor) -> torch.Tensor:
    """Put +-beta/2 and its neighbouring values of w's dtype into w (beta as the plain formula gives it)."""
    half = torch.tensor([plain_ternarize(w)[1] / 2], dtype=torch.float64)
    up = torch.nextafter(half, torch.ones(1, dtype=torch.float64))
    down = torch.nextafter(half, torch.zeros(1, dtype=torch.float64))
    edge = torch.cat([half, up, down]).to(w.dtype)
    w = w.clone()
    w[0, :3], w[1, :3], w[2, 0], w[2, 1] = edge, -edge, 0.0, -0.0
    return w


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_same_as_the_plain_formula(dtype):
    g = torch.Generator().manual_seed(3)
    for scale in (0.02, 1.0, 3e-4):
        w = _with_threshold_neighbours((torch.randn(300, 257, generator=g) * scale).to(dtype))
        values, beta = ternarize(w)
        ref_values, ref_beta = plain_ternarize(w)
        assert beta == ref_beta and values.dtype == torch.int8 and torch.equal(values, ref_values)


def test_more_rows_than_one_block():
    w = (torch.randn(9000, 16, generator=torch.Generator().manual_seed(5)) * 0.05).to(torch.bfloat16)
    values, beta = ternarize(w)
    ref_values, ref_beta = plain_ternarize(w)
    assert beta == ref_beta and torch.equal(values, ref_values)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_16_bit_value(dtype):
    every = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)
    every = every[torch.isfinite(every)]
    for w in (every, every[every.abs() < 1]):  # two betas: huge and moderate
        values, beta = ternarize(w)
        ref_values, ref_beta = plain_ternarize(w)
        assert beta == ref_beta and torch.equal(values, ref_values.reshape(values.shape))


def _adversarial(dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    """Weights whose float64 sum of |w| rounds: magnitudes from subnormal to huge, signed zeros, one dominant value."""
    info = torch.finfo(dtype)
    exponents = torch.randint(int(math.log2(info.tiny)) - 8, int(math.log2(info.max)) - 24, (257, 129), generator=g)
    w = (torch.randn(257, 129, generator=g, dtype=torch.float64) * torch.pow(2.0, exponents.double())).to(dtype)
    w[0, :4] = torch.tensor([0.0, -0.0, info.smallest_normal, -info.tiny], dtype=torch.float64).to(dtype)
    w[1, 0] = info.max / 4
    return w


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_beta_sum_is_the_plain_float64_sum(dtype):
    """`_abs_sum_float64` (|w| before the float64 copy) gives the bits of `w.double().abs().sum()`, rounding included."""
    g = torch.Generator().manual_seed(11)
    cases = [_adversarial(dtype, g) for _ in range(20)]
    cases += [(torch.randn(4096, 64, generator=g) * scale).to(dtype) for scale in (0.02, 1e-3, 7.0)]
    cases += [torch.randn(64, 300, generator=g).to(dtype).T]  # not contiguous
    for w in cases:
        assert _abs_sum_float64(w) == float(w.double().abs().sum())
    for w in cases[-4:]:
        assert ternarize(w)[1] == plain_ternarize(w)[1]


def test_beta_sum_workspace_reused_grown_and_per_thread(monkeypatch):
    """The reused float64 workspace gives the plain sum whatever block came before (smaller, larger, wider than the
    kept size), and each thread has its own."""
    import threading

    from inspector.lm import ternary

    monkeypatch.setattr(ternary, "WORKSPACE_MAX_ELEMENTS", 5000)
    g = torch.Generator().manual_seed(12)
    blocks = [_adversarial(torch.bfloat16, g)[: rows, : cols] for rows, cols in ((10, 10), (257, 129), (3, 7), (40, 125), (0, 5))]
    for block in blocks + blocks[::-1]:
        assert _abs_sum_float64(block) == float(block.double().abs().sum())
    results: list[bool] = []

    def worker() -> None:
        results.extend(_abs_sum_float64(b) == float(b.double().abs().sum()) for b in blocks * 20)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 * 20 * len(blocks) and all(results)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(bad):
    w = torch.randn(8, 8).to(torch.bfloat16)
    w[3, 5] = bad
    with pytest.raises(NonFiniteWeightError, match="NaN or infinite"):
        ternarize(w)


def test_histogram_counts_every_weight():
    w = torch.randn(64, 32) * 0.1
    _, beta = ternarize(w)
    assert int(latent_histogram(w, beta).sum()) == w.numel()
