"""The whole integer model against a plain scalar re-implementation, plus determinism and saturation.

`scalar_forward` below recomputes every layer with Python ints, one neuron at a time, from the same
integer parameters (tables, multipliers, ternary weights) but none of the model's kernels.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from inspector.lm.model import HGRNBitForCausalLM
from inspector.quant.calibrate import calibrate
from inspector.quant.config import QuantConfig, QuantConfigError
from inspector.quant.convert import convert
from inspector.quant.integer_model import IntegerLM
from tests.conftest import TINY_TEXT, randomize, tiny_config


def rs(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) // (1 << s) if s > 0 else v * (1 << -s)


def sat(v: int, bits: int) -> int:
    return min(max(v, -(1 << (bits - 1))), (1 << (bits - 1)) - 1)


def rq(v: int, r) -> int:
    return sat(rs(v * r.multiplier, r.shift), r.bits)


def norm(xs: list[int], n) -> list[int]:
    size = len(xs)
    mean = (2 * sum(v * v for v in xs) + size) // (2 * size) + n.eps_q
    inv = 0 if mean == 0 else math.isqrt((1 << (2 * n.frac_bits)) // mean)
    return [rq(v * inv * int(w), n.out) for v, w in zip(xs, n.weight_q.tolist(), strict=True)]


def bitlinear(xs: list[int], p, acc_bits: int) -> list[int]:
    spikes = norm(xs, p.norm)
    return [sat(sum(w * s for w, s in zip(row, spikes, strict=True)), acc_bits) for row in p.weight.tolist()]


def lut(table, code: int, bits: int) -> int:
    return int(table[code + (1 << (bits - 1))])


def add(a: int, b: int, r) -> int:
    return sat(rs(a * r.m_a + b * r.m_b, r.shift), r.bits)


def scalar_forward(ilm: IntegerLM, tokens: list[int]):
    qc, P = ilm.qc, ilm.params
    one, Q, A = 1 << qc.gate_frac_bits, qc.gate_frac_bits, qc.internal_bits
    states = [[0] * ilm.config.mixer_size for _ in P.layers]
    finals = []
    for tok in tokens:
        emb = ilm.embeddings.weight[tok].double().tolist()
        x = [sat(math.floor(e / P.input_scale + 0.5), qc.residual_bits) for e in emb]
        for k, L in enumerate(P.layers):
            a = norm(x, L.attn_norm)
            i = [rq(v, L.i_out) for v in bitlinear(a, L.i_proj, qc.accumulator_bits)]
            f = [rq(v, L.f_out) for v in bitlinear(a, L.f_proj, qc.accumulator_bits)]
            g = [rq(v, L.g_out) for v in bitlinear(a, L.g_proj, qc.accumulator_bits)]
            h = states[k]
            for j in range(len(h)):
                fq = lut(L.sigmoid_f, f[j], A)
                if L.lower_bound_q is not None:
                    lb = int(L.lower_bound_q[j])
                    fq = lb + rs((one - lb) * fq, Q)
                iq = rs(lut(L.silu_i, i[j], A) * (one - fq), Q)
                h[j] = sat(rs(fq * h[j], Q) + rq(iq, L.input_to_state), qc.state_bits)
            gn = norm(g, L.g_norm)
            gated = [rq(gv * lut(L.silu_h, rq(hv, L.state_to_code), A), L.gated_out) for gv, hv in zip(gn, h, strict=True)]
            o = [rq(v, L.o_out) for v in bitlinear(gated, L.o_proj, qc.accumulator_bits)]
            r = [add(xv, ov, L.residual_attn) for xv, ov in zip(x, o, strict=True)]
            m = norm(r, L.mlp_norm)
            acc = bitlinear(m, L.gate_proj, qc.accumulator_bits)
            half = len(acc) // 2
            gate = [rq(v, L.gate_out) for v in acc[:half]]
            y = [rq(v, L.y_out) for v in acc[half:]]
            glu = [rq(lut(L.silu_gate, gv, A) * yv, L.glu_out) for gv, yv in zip(gate, y, strict=True)]
            d = [rq(v, L.down_out) for v in bitlinear(glu, L.down_proj, qc.accumulator_bits)]
            x = [add(rv, dv, L.residual_mlp) for rv, dv in zip(r, d, strict=True)]
        finals.append(norm(x, P.final_norm))
    return finals, states


class FinalNormProbe:
    def __init__(self):
        self.values = {}

    def site(self, key, codes, scale, clipped, kind):
        self.values[key] = codes.clone()

    def synapses(self, key, spikes, proj):
        pass


def build(tiny_tokenizer, qc=None, seed=0, **cfg):
    config = tiny_config(vocab_size=tiny_tokenizer.get_vocab_size(), **cfg)
    model = randomize(HGRNBitForCausalLM(config), seed=seed).eval()
    qc = qc or QuantConfig()
    cal = calibrate(model, tiny_tokenizer, TINY_TEXT, qc.calibration_tokens)
    return model, IntegerLM(convert(model, cal, qc), model)


@pytest.mark.parametrize(
    "qc", [QuantConfig(), QuantConfig(pow2_scales=True, act_bits=6, internal_bits=8, spike_bits=7, state_bits=16)],
)
def test_integer_model_matches_scalar_reference(tiny_tokenizer, qc):
    _, ilm = build(tiny_tokenizer, qc, num_hidden_layers=2)
    tokens = tiny_tokenizer.encode("To be, or not to be").ids[:6]
    probe = FinalNormProbe()
    _, state = ilm(torch.tensor([tokens]), None, probe)
    finals, states = scalar_forward(ilm, tokens)
    assert probe.values["final_norm"][0].tolist() == finals
    assert [s[0].tolist() for s in state] == states


def test_two_runs_give_identical_bits(tiny_tokenizer):
    _, ilm = build(tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer.encode("Once upon a time there was").ids])
    a, b = FinalNormProbe(), FinalNormProbe()
    la, sa = ilm(ids, None, a)
    lb, sb = ilm(ids, None, b)
    assert torch.equal(la, lb)
    assert all(torch.equal(x, y) for x, y in zip(sa, sb, strict=True))
    assert a.values.keys() == b.values.keys()
    assert all(torch.equal(a.values[k], b.values[k]) for k in a.values)


def test_prefill_equals_token_by_token(tiny_tokenizer):
    """Feeding a sequence at once or token by token gives the same bits, host logits included."""
    _, ilm = build(tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer.encode("Whether 'tis nobler in the mind").ids])
    probe = FinalNormProbe()
    full, full_state = ilm(ids, None, probe)
    state, steps, finals = None, [], []
    for t in range(ids.shape[1]):
        step_probe = FinalNormProbe()
        logits, state = ilm(ids[:, t : t + 1], state, step_probe)
        steps.append(logits[:, 0])
        finals.append(step_probe.values["final_norm"][:, 0])
    assert torch.equal(torch.stack(finals, 1), probe.values["final_norm"])
    assert all(torch.equal(a, b) for a, b in zip(state, full_state, strict=True))
    assert torch.equal(torch.stack(steps, 1), full)


def test_integer_model_tracks_float_model(tiny_tokenizer):
    model, ilm = build(tiny_tokenizer, seed=4)
    ids = torch.tensor([tiny_tokenizer.encode("The slings and arrows of outrageous fortune").ids])
    with torch.no_grad():
        f_logits, _ = model(ids)
    i_logits, _ = ilm(ids)
    cos = torch.nn.functional.cosine_similarity(f_logits[0], i_logits[0].float(), dim=-1)
    assert cos.min() > 0.9


def test_saturation_is_detected_on_overflowing_state(tiny_tokenizer):
    """A state register far too narrow for the calibrated range must clip, and the probe says so."""
    qc = QuantConfig(state_bits=6, state_headroom=1.0)
    _, ilm = build(tiny_tokenizer, qc)
    # shrink the state scale 50x after conversion: the same inputs now overflow the 6-bit state
    for layer in ilm.params.layers:
        r = layer.input_to_state
        layer.input_to_state = dataclasses.replace(r, multiplier=r.multiplier * 50)

    class ClipProbe(FinalNormProbe):
        def site(self, key, codes, scale, clipped, kind):
            if kind == "state":
                self.values[key] = (codes.clone(), clipped.clone())

    probe = ClipProbe()
    ilm(torch.tensor([tiny_tokenizer.encode("To be, or not to be, that is the question").ids]), None, probe)
    codes, clipped = probe.values["layers.0.hidden"]
    assert clipped.any()
    assert codes.abs().max() <= 2**5
    assert ((codes == 31) | (codes == -32))[clipped].float().mean() > 0.5  # most clips sit on the rails

    normal = ClipProbe()
    _, plain = build(tiny_tokenizer)
    plain(torch.tensor([tiny_tokenizer.encode("To be, or not to be, that is the question").ids]), None, normal)
    assert not normal.values["layers.0.hidden"][1].any()  # the calibrated default does not clip here


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"state_bits": 32}, "register"),
        ({"act_bits": 1}, "graded spikes"),
        ({"act_bits": 30}, "graded spikes"),
        ({"registerbits": 24}, "unknown QuantConfig key"),
        ({"gate_frac_bits": 40}, "gate_frac_bits"),
        ({"internal_bits": 20}, "tables"),
    ],
)
def test_unrepresentable_quant_configs_are_rejected(overrides, match):
    with pytest.raises(QuantConfigError, match=match):
        QuantConfig().with_overrides(overrides)


def test_integer_model_shares_the_float_models_ternary_matrices(tiny_checkpoint):
    """One int8 copy of every ternary matrix: the loaded (frozen) float model's, used by the integer model."""
    from inspector.backends.emulator import Emulator
    from inspector.lm.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    emulator = Emulator(loaded, QuantConfig(calibration_tokens=64))
    for idx, layer in enumerate(emulator.params.layers):
        block = loaded.model.model.layers[idx]
        assert layer.i_proj.matrix is block.attn.i_proj.ternary
        assert layer.down_proj.matrix is block.mlp.down_proj.ternary
        assert layer.i_proj.matrix.values.dtype == torch.int8
