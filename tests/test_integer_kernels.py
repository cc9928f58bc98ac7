"""Integer kernels against plain scalar Python (arbitrary-precision ints, one element at a time)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from inspector.lm.ternary import TernaryMatrix, exact_matmul
from inspector.quant import kernels as K

RNG = random.Random(1234)
EDGE = [0, 1, -1, 2, -2, 127, -128, 128, -129, 2**23 - 1, -(2**23), 2**23, 2**31 - 1, -(2**31)]


def py_round_shift(v: int, s: int) -> int:
    if s > 0:
        return (v + (1 << (s - 1))) // (1 << s)  # Python // floors, like an arithmetic shift
    return v * (1 << -s)


def py_saturate(v: int, bits: int) -> tuple[int, bool]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(v, lo), hi), not lo <= v <= hi


def values(n=300, lo=-(2**30), hi=2**30):
    return EDGE + [RNG.randint(lo, hi) for _ in range(n)]


@pytest.mark.parametrize("shift", [0, 1, 3, 7, 12, 20, -2])
def test_round_shift(shift):
    xs = values()
    got = K.round_shift(torch.tensor(xs), shift).tolist()
    assert got == [py_round_shift(v, shift) for v in xs]


def test_round_shift_rounds_half_up():
    assert K.round_shift(torch.tensor([3, -3, 5, -5, 1, -1]), 1).tolist() == [2, -1, 3, -2, 1, 0]


def test_round_div():
    for _ in range(500):
        n, d = RNG.randint(-(10**9), 10**9), RNG.randint(1, 10**6)
        expected = math.floor(n / d + 0.5) if abs(n) < 2**50 else None
        got = int(K.round_div(torch.tensor([n]), d)[0])
        assert got == (2 * n + d) // (2 * d) == expected


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_saturate_counts_every_clip(bits):
    xs = values()
    out, clipped = K.saturate(torch.tensor(xs), bits)
    ref = [py_saturate(v, bits) for v in xs]
    assert out.tolist() == [r[0] for r in ref]
    assert clipped.tolist() == [r[1] for r in ref]
    assert int(clipped.sum()) > 0  # the edge values do overflow


def test_requantize():
    for _ in range(50):
        m, s, bits = RNG.randint(1, 2**16 - 1), RNG.randint(0, 30), RNG.choice([8, 16, 24])
        xs = values(100, -(2**24), 2**24)
        out, clipped = K.requantize(torch.tensor(xs), m, s, bits)
        ref = [py_saturate(py_round_shift(v * m, s), bits) for v in xs]
        assert out.tolist() == [r[0] for r in ref]
        assert clipped.tolist() == [r[1] for r in ref]


@pytest.mark.parametrize("ratio", [1e-6, 0.001234, 0.5, 1.0, 0.9999999, 3.7, 1234.5])
def test_fixed_multiplier(ratio):
    m, s = K.fixed_multiplier(ratio, 16)
    assert 0 < m < 2**16
    assert abs(m / 2**s - ratio) <= ratio * 2**-15


def test_isqrt_and_inv_sqrt_exact():
    xs = [0, 1, 2, 3, 4, 15, 16, 17, 2**40, 2**40 - 1, 2**51 + 12345] + [RNG.randint(0, 2**50) for _ in range(500)]
    assert K.isqrt_floor(torch.tensor(xs)).tolist() == [math.isqrt(v) for v in xs]
    ms = [0, 1, 2, 3, 100, 16129, 2**20] + [RNG.randint(1, 2**24) for _ in range(300)]
    for frac in (8, 12, 16):
        got = K.inv_sqrt_fixed(torch.tensor(ms), frac).tolist()
        ref = [0 if m == 0 else math.isqrt((1 << (2 * frac)) // m) for m in ms]
        assert got == ref
        # and it really is floor(2^F / sqrt(m))
        for m, r in zip(ms[1:], got[1:], strict=True):
            assert r <= 2**frac / math.sqrt(m) < r + 1


def py_rmsnorm(row, weight, eps_q, frac, m, s, bits):
    n = len(row)
    mean = (2 * sum(v * v for v in row) + n) // (2 * n) + eps_q
    inv = 0 if mean == 0 else math.isqrt((1 << (2 * frac)) // mean)
    return [py_saturate(py_round_shift(v * inv * w * m, s), bits) for v, w in zip(row, weight, strict=True)]


@pytest.mark.parametrize("bits_in", [8, 16])
def test_rmsnorm_int(bits_in):
    n = 37
    lim = 2 ** (bits_in - 1)
    rows = [[RNG.randint(-lim, lim - 1) for _ in range(n)] for _ in range(20)]
    rows.append([0] * n)  # all-zero input: no division by zero
    rows.append([lim - 1] * n)  # maximal input
    weight = [RNG.randint(-2000, 2000) for _ in range(n)]
    m, s = 40000, 30
    out, clipped = K.rmsnorm_int(torch.tensor(rows), torch.tensor(weight), 0, 16, m, s, 8)
    for row, got_row, got_clip in zip(rows, out.tolist(), clipped.tolist(), strict=True):
        ref = py_rmsnorm(row, weight, 0, 16, m, s, 8)
        assert got_row == [r[0] for r in ref]
        assert got_clip == [r[1] for r in ref]


def test_lut_lookup():
    table = torch.tensor([RNG.randint(-999, 999) for _ in range(256)])
    codes = list(range(-128, 128))
    RNG.shuffle(codes)
    got = K.lut_lookup(torch.tensor(codes), table, 8).tolist()
    assert got == [int(table[c + 128]) for c in codes]


@pytest.mark.parametrize("fan_in,max_code", [(64, 127), (64, 128), (3000, 128), (300, 2**20), (5000, 2**15)])
def test_ternary_accumulation_exact(fan_in, max_code):
    """int8 codes (the int8 GEMM path), wider codes (float32 / float64 paths) and the extremes are exact."""
    out_features = 23
    w = [[RNG.choice([-1, 0, 0, 1]) for _ in range(fan_in)] for _ in range(out_features)]
    xs = [[RNG.randint(-max_code, max_code - 1) for _ in range(fan_in)] for _ in range(4)]
    xs[0] = [max_code - 1] * fan_in  # worst case for the accumulator
    got = exact_matmul(torch.tensor(xs), torch.tensor(w, dtype=torch.int8)).tolist()
    ref = [[sum(wi * xi for wi, xi in zip(row, x, strict=True)) for row in w] for x in xs]
    assert got == ref


def test_synaptic_ops_count_nonzero_spikes_on_existing_synapses():
    w = [[RNG.choice([-1, 0, 0, 1]) for _ in range(50)] for _ in range(7)]
    xs = [[RNG.choice([0, 0, RNG.randint(-128, 127)]) for _ in range(50)] for _ in range(3)]
    got = TernaryMatrix(torch.tensor(w, dtype=torch.int8), 1.0).synaptic_ops(torch.tensor(xs)).tolist()
    assert got == [[sum(1 for wi, xi in zip(row, x, strict=True) if wi != 0 and xi != 0) for row in w] for x in xs]


@pytest.mark.parametrize("shift", [-3, 0, 1, 7, 20])
def test_in_place_rounding_and_saturation_match_the_plain_ones(shift):
    values = torch.randint(-(1 << 30), 1 << 30, (3, 257), generator=torch.Generator().manual_seed(shift + 5))
    assert torch.equal(K.round_shift_(values.clone(), shift), K.round_shift(values, shift))
    plain, plain_mask = K.saturate(values, 12)
    in_place, mask = K.saturate_(values.clone(), 12)
    assert torch.equal(in_place, plain) and torch.equal(mask, plain_mask)
    assert K.saturate_(values.clone(), 12, clipped=False)[1] is None


def test_inverse_rms_scalar_path_equals_the_vectorized_one():
    codes = torch.randint(-(1 << 15), 1 << 15, (1, 3, 200), generator=torch.Generator().manual_seed(1))
    codes[0, 1] = 0  # a zero row: mean square 0 plus eps
    for eps in (0, 3):
        vectorized = K.inv_sqrt_fixed(K.round_div((codes * codes).sum(-1, keepdim=True), codes.shape[-1]) + eps, 16)
        assert K.SCALAR_NORM_ROWS >= 3
        assert torch.equal(K.inverse_rms(codes, eps, 16), vectorized)  # 3 rows: the Python-integer path
        one = K.inverse_rms(codes[:, :1], eps, 16)
        assert isinstance(one, int) and one == int(vectorized[0, 0, 0])
        many = torch.cat([codes] * (K.SCALAR_NORM_ROWS // 3 + 1), dim=1)
        assert torch.equal(
            K.inverse_rms(many, eps, 16),
            K.inv_sqrt_fixed(K.round_div((many * many).sum(-1, keepdim=True), 200) + eps, 16),
        )


def test_rmsnorm_with_the_folded_gain_is_the_same_integer():
    codes = torch.randint(-(1 << 15), 1 << 15, (1, 5, 64), generator=torch.Generator().manual_seed(2))
    gain = torch.randint(1, 1 << 12, (64,), generator=torch.Generator().manual_seed(3))
    for multiplier, shift in ((40000, 30), (65535, 40), (3, 2)):
        plain = K.rmsnorm_int(codes, gain, 2, 16, multiplier, shift, 8)
        folded = K.rmsnorm_int(codes, gain, 2, 16, multiplier, shift, 8, scaled_gain=gain * multiplier)
        assert torch.equal(plain[0], folded[0]) and torch.equal(plain[1], folded[1])
