"""The float model against an independent, plain reference of the HGRNBit equations.

The reference (tests/upstream_reference.py) is a float64 port of the released upstream forward pass
that reads the state_dict by its checkpoint key names, with an explicit loop over time, sharing no
code or constants with `inspector.lm.model`. Matching it checks both the arithmetic and the key layout
that real MMfreeLM checkpoints use. tests/test_released_checkpoint.py does the same on a checkpoint
written in the released layout.
"""

from __future__ import annotations

import math

import torch

from inspector.lm.model import HGRNBitForCausalLM, activation_quant_int, round_half_away
from tests.conftest import randomize, tiny_config
from tests.upstream_reference import upstream_logits


def reference_forward(sd, config, tokens):
    """Logits for one sequence from the float64 port of the upstream forward (tests/upstream_reference.py)."""
    return upstream_logits(sd, config.to_dict(), tokens)


def test_float_model_matches_plain_reference():
    config = tiny_config(vocab_size=64, num_hidden_layers=3)
    model = randomize(HGRNBitForCausalLM(config), seed=1).double().eval()
    tokens = [3, 17, 5, 63, 0, 22, 22, 9, 41, 2]
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens]))
    sd = {k: v.double() for k, v in model.state_dict().items()}
    expected = reference_forward(sd, config, tokens)
    assert logits.shape == (1, len(tokens), 64)
    diff = (logits[0] - expected).abs().max().item()
    assert diff < 1e-9, diff


def test_float32_model_close_to_reference():
    config = tiny_config(vocab_size=64)
    model = randomize(HGRNBitForCausalLM(config), seed=2).eval()
    tokens = list(range(0, 64, 5))
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens]))
    sd = {k: v.double() for k, v in model.state_dict().items()}
    expected = reference_forward(sd, config, tokens)
    # float32 may flip an 8-bit rounding at a .5 boundary; almost all logits agree tightly
    close = torch.isclose(logits[0].double(), expected, atol=1e-3, rtol=1e-3).float().mean().item()
    assert close > 0.95


def test_recurrent_steps_equal_full_sequence():
    config = tiny_config(vocab_size=64)
    model = randomize(HGRNBitForCausalLM(config), seed=3).double().eval()
    tokens = torch.tensor([[5, 9, 1, 33, 60, 7, 7, 12]])
    with torch.no_grad():
        full, full_state = model(tokens)
        state = None
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = model(tokens[:, t : t + 1], state)
            steps.append(logits[:, 0])
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-10)
    for a, b in zip(state, full_state, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_state_dict_keys_follow_hf_layout():
    keys = set(HGRNBitForCausalLM(tiny_config(num_hidden_layers=1)).state_dict())
    expected = {
        "model.embeddings.weight",
        "model.lower_bounds",
        "model.norm.weight",
        "lm_head.weight",
        "lm_head.norm.weight",
        "model.layers.0.attn_norm.weight",
        "model.layers.0.mlp_norm.weight",
        "model.layers.0.attn.g_norm.weight",
    }
    for proj in ("attn.i_proj", "attn.f_proj", "attn.g_proj", "attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
        expected |= {f"model.layers.0.{proj}.weight", f"model.layers.0.{proj}.norm.weight"}
    assert keys == expected


def test_intermediate_size_default_matches_reference_formula():
    from inspector.lm.config import HGRNBitConfig

    for hidden in (1024, 2048, 2560, 256):
        cfg = HGRNBitConfig(hidden_size=hidden)
        assert cfg.mlp_intermediate_size == 256 * math.ceil(int(hidden * 4 * 2 / 3) / 256)
    assert HGRNBitConfig(hidden_size=1024).mlp_intermediate_size == 2816


def test_training_step_reduces_loss():
    """The straight-through estimator lets gradients reach the latent float weights."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=32)
    model = HGRNBitForCausalLM(config)
    batch = torch.randint(0, 32, (4, 17), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def test_activation_quant_is_the_plain_formula_bit_for_bit():
    """The in-place rounding and the one-pass max|x| give the bits of the plain formulas (NaN, infinities,
    signed zeros, exact halves and the float just below a half included)."""
    g = torch.Generator().manual_seed(1)
    specials = [0.5, -0.5, 1.5, -2.5, 0.49999999999999994, -0.0, 0.0, 126.5]
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        for k in range(60):
            x = (torch.randn(5, 67, generator=g, dtype=torch.float64) * 10.0 ** int(torch.randint(-8, 8, ()))).to(dtype)
            x[0, : len(specials)] = torch.tensor(specials, dtype=torch.float64).to(dtype)
            x[1] = 0.0
            if k % 10 == 0:
                x[2, 3], x[3, 1], x[4, 2] = float("nan"), float("inf"), -float("inf")
            scaled = x * 37.25
            whole = torch.trunc(scaled)
            plain_round = whole + torch.sign(scaled) * ((scaled - whole).abs() >= 0.5).to(dtype)
            assert torch.equal(_bits(round_half_away(scaled)), _bits(plain_round))
            plain_scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
            codes, scale = activation_quant_int(x)
            assert torch.equal(_bits(scale), _bits(plain_scale))
            y = x * plain_scale
            whole = torch.trunc(y)
            plain_codes = (whole + torch.sign(y) * ((y - whole).abs() >= 0.5).to(dtype)).clamp(-128, 127)
            assert torch.equal(_bits(codes), _bits(plain_codes))
