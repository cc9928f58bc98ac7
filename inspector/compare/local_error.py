"""Local vs cumulative error: where the integer model's error is *introduced*, not only where it shows.

Cumulative error (what `inspector.compare.diff` measures) is the integer model fed its own integers: each
site carries everything it inherited from the sites before it. Local error isolates a site:

- the integer model runs once more with a feeding probe (`FeedProbe`): after every site that the
  float model also has, the next operation receives the float model's value at that site, quantized
  exactly as the integer model quantizes it there (the site's scale, round half up, saturated to the
  site's width). The MLGRU recurrence is fed the float model's previous state the same way.
- so each site's integer output is its integer operation applied to quantized float inputs; it is
  compared with the float operation applied to *the same* (dequantized) inputs.

The difference is only what the site's own arithmetic adds: its output rounding, its lookup tables,
fixed-point multipliers, saturation. Input rounding is charged to the site that produced the input,
so every rounding is counted once, at the site where it happens. A site whose integer operation is
exact has zero local error, however much error it inherits (tested).

Over the comparison's per-neuron window only: every fed operation reads the float model's values of
its own token, except the recurrence, which also reads the float state of the token before. So the
window's local error needs the float values of the window (which the comparison keeps) and the
float model's state just before the window (one vector per layer, from a float run over the tokens
before it, chunk by chunk); it is the same as the whole sequence's restricted to the window (tested),
and a 4,000-token prompt costs no more memory than its window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import polars as pl
import torch
import torch.nn.functional as F

from inspector import schema as S
from inspector.backends.emulator import Emulator
from inspector.compare.diff import CHUNK_TOKENS, DiffResult, compare
from inspector.lm.model import HGRNBitForCausalLM
from inspector.quant import kernels as K
from inspector.quant.convert import IntegerParams
from inspector.quant.widths import site_range
from inspector.schema import split_site_key

TOP_SITES = 3  # how many sites the page marks as introducing most of the error


def site_ranges(params: IntegerParams) -> dict[str, tuple[int, int]]:
    """The integer range of every fed site, from the one site table (`inspector.schema`)."""
    ranges = {key: site_range(key, params.qc) for key in S.OUTER_SITES}
    for idx in range(len(params.layers)):
        ranges.update({S.layer_key(idx, site): site_range(site, params.qc) for site in S.LAYER_SITES})
    return ranges


class FeedProbe:
    """Records each site's integer output and feeds the next operation quantized float values."""

    def __init__(
        self, float_sites: dict[str, torch.Tensor], params: IntegerParams, before: Optional[list[torch.Tensor]] = None,
    ):
        self.float_sites = float_sites
        self.params = params
        self.before = before  # per layer, the float state before the first fed token (None: zeros)
        self.ranges = site_ranges(params)
        self.outputs: dict[str, torch.Tensor] = {}  # key -> (T, N) the site's integer output, dequantized
        self.fed: dict[str, torch.Tensor] = {}  # key -> (T, N) what the next operation received, dequantized
        self.fed_before: dict[str, torch.Tensor] = {}  # hidden key -> (N,) the state fed to the first token, dequantized

    def _quantize(self, key: str, scale: float, real: Optional[torch.Tensor] = None) -> torch.Tensor:
        lo, hi = self.ranges[key]
        real = (self.float_sites[key] if real is None else real).double()
        return torch.floor(real / scale + 0.5).clamp(lo, hi).to(K.INT)

    def site(self, key: str, codes: torch.Tensor, scale: float, clipped: Optional[torch.Tensor], kind: str) -> None:
        if kind != "host":
            self.outputs[key] = codes[0].double() * scale

    def synapses(self, key, spikes, proj) -> None:
        """Activity is not counted in a local-error run."""

    def replace(self, key: str, codes: torch.Tensor, scale: float) -> torch.Tensor:
        if key not in self.float_sites or key not in self.ranges:
            return codes  # a site the float model lacks (e.g. g_norm): part of the next site's operation
        q = self._quantize(key, scale)
        self.fed[key] = q.double() * scale
        return q[None]

    def previous_states(self, key: str, initial: torch.Tensor, steps: int) -> torch.Tensor:
        layer, _ = split_site_key(key)
        scale = self.params.layers[layer].scales[S.HIDDEN]
        q = self._quantize(key, scale)[None]
        if self.before is not None:  # the window starts after token 0: the float state before it, quantized
            initial = self._quantize(key, scale, self.before[layer].reshape(1, -1))
            self.fed_before[key] = initial[0].double() * scale
        return torch.cat([initial[:, None], q[:, :-1]], dim=1)


@torch.no_grad()
def float_reference(
    model: HGRNBitForCausalLM, fed: dict[str, torch.Tensor], fed_before: Optional[dict[str, torch.Tensor]] = None,
) -> dict[str, torch.Tensor]:
    """Each site's float operation applied to the dequantized inputs the integer site received
    (`fed_before`: the state fed to the first token's recurrence, when it was not zero).

    Uses the float model's own modules (norms, BitLinears), so a change to the float model is picked up.
    """

    def v(key: str) -> torch.Tensor:
        return fed[key].float()[None]

    out: dict[str, torch.Tensor] = {}
    bounds = model.model.layer_lower_bounds()
    source = S.EMBEDDINGS
    for idx, block in enumerate(model.model.layers):
        p = f"layers.{idx}."
        attn = block.attn
        out[p + S.ATTN_NORM] = block.attn_norm(v(source))
        for name in (S.I_PROJ, S.F_PROJ, S.G_PROJ):
            out[p + name] = getattr(attn, name)(v(p + S.ATTN_NORM))
        f = torch.sigmoid(v(p + S.F_PROJ))
        if bounds is not None and idx > 0:
            f = bounds[idx] + (1 - bounds[idx]) * f
        out[p + S.FORGET_GATE] = f
        out[p + S.INPUT_GATE] = F.silu(v(p + S.I_PROJ)) * (1 - v(p + S.FORGET_GATE))
        h = v(p + S.HIDDEN)
        first = fed_before[p + S.HIDDEN].float().reshape(1, 1, -1) if fed_before and p + S.HIDDEN in fed_before else None
        before = torch.cat([torch.zeros_like(h[:, :1]) if first is None else first, h[:, :-1]], dim=1)
        out[p + S.HIDDEN] = v(p + S.FORGET_GATE) * before + v(p + S.INPUT_GATE)
        out[p + S.GATED_OUTPUT] = attn.g_norm(v(p + S.G_PROJ)) * F.silu(v(p + S.HIDDEN))
        out[p + S.O_PROJ] = attn.o_proj(v(p + S.GATED_OUTPUT))
        out[p + S.RESIDUAL_ATTN] = v(source) + v(p + S.O_PROJ)
        out[p + S.MLP_NORM] = block.mlp_norm(v(p + S.RESIDUAL_ATTN))
        out[p + S.GATE_HALF], out[p + S.Y] = block.mlp.gate_proj(v(p + S.MLP_NORM)).chunk(2, dim=-1)
        out[p + S.GLU] = F.silu(v(p + S.GATE_HALF)) * v(p + S.Y)
        out[p + S.DOWN_PROJ] = block.mlp.down_proj(v(p + S.GLU))
        out[p + S.RESIDUAL_MLP] = v(p + S.RESIDUAL_ATTN) + v(p + S.DOWN_PROJ)
        source = p + S.RESIDUAL_MLP
    out[S.FINAL_NORM] = model.model.norm(v(source))
    return {k: t[0] for k, t in out.items()}


def _powers(reference: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: signal power of the reference and power of the error."""
    f, q = reference.double(), test.double()
    return (f * f).sum(-1), ((f - q) ** 2).sum(-1)


def _db(signal: torch.Tensor | float, noise: torch.Tensor | float) -> torch.Tensor:
    signal, noise = torch.as_tensor(signal, dtype=torch.float64), torch.as_tensor(noise, dtype=torch.float64)
    db = 10 * torch.log10(signal / noise)
    return torch.where(noise == 0, torch.full_like(db, math.inf), db)


@dataclass
class LocalErrorResult:
    tokens: pl.DataFrame  # token, layer, site, local_sqnr_db, cumulative_sqnr_db, local_nsr, cumulative_nsr
    sites: pl.DataFrame  # layer, site, local_sqnr_db, cumulative_sqnr_db, local_nsr, cumulative_nsr, rank, introduces
    diff: DiffResult  # the comparison it was computed from (its memory is the analysis's, not this result's)
    window_start: int = 0  # the first token of `tokens` (counted from the start of the sequence)

    def nbytes(self) -> int:
        """What this result holds beyond its comparison: its two tables (for the run cache's budget)."""
        return int(self.tokens.estimated_size() + self.sites.estimated_size())


@torch.no_grad()
def float_state_before(
    model: HGRNBitForCausalLM, ids: list[int], stop: int, chunk_tokens: int = CHUNK_TOKENS,
) -> list[torch.Tensor]:
    """The float model's recurrent state after reading `ids[:stop]`, in the chunks `compare` reads them
    (the same float operations, so the same values as the comparison's)."""
    state = None
    for start in range(0, stop, chunk_tokens):
        _, state = model(torch.tensor([ids[start : min(start + chunk_tokens, stop)]]), state)
    return [h[0] for h in state]


def local_vs_cumulative(emulator: Emulator, ids: list[int], diff: Optional[DiffResult] = None) -> LocalErrorResult:
    """Both errors for every site, per token, on a fixed token sequence (teacher-forced, at once),
    over the comparison's per-neuron window (see the module docstring).

    `diff`: an existing comparison on exactly `ids` (its window and cumulative errors are used);
    without one, the whole sequence is compared and every token is in the window.
    """
    if diff is None or diff.ids != list(ids):
        diff = compare(emulator, list(ids), keep_from=0)
    start = diff.window_start
    window = list(ids)[start:]
    model = emulator.loaded.model
    before = float_state_before(model, list(ids), start) if start > 0 else None
    probe = FeedProbe(diff.float_values, emulator.params, before)
    with torch.no_grad():
        emulator.integer(torch.tensor([window]), None, probe)
    reference = float_reference(model, probe.fed, probe.fed_before)
    reference[S.EMBEDDINGS] = diff.float_values[S.EMBEDDINGS]  # the host's quantization is the operation
    frames, summary = [], []
    tokens = list(range(start, len(ids)))
    for key, local_ref in reference.items():
        if key not in probe.outputs or key not in diff.sites():
            continue
        s_loc, n_loc = _powers(local_ref, probe.outputs[key])
        s_cum, n_cum = _powers(diff.float_values[key], diff.int_probe.site_values(key))
        layer, site = split_site_key(key)
        frames.append(
            pl.DataFrame(
                {
                    "token": tokens,
                    "layer": [layer] * len(tokens),
                    "site": [site] * len(tokens),
                    "local_sqnr_db": _db(s_loc, n_loc).tolist(),
                    "cumulative_sqnr_db": _db(s_cum, n_cum).tolist(),
                    "local_nsr": (n_loc / s_loc.clamp(min=1e-30)).tolist(),
                    "cumulative_nsr": (n_cum / s_cum.clamp(min=1e-30)).tolist(),
                }
            )
        )
        summary.append(
            {
                "layer": layer,
                "site": site,
                "local_sqnr_db": float(_db(s_loc.sum(), n_loc.sum())),
                "cumulative_sqnr_db": float(_db(s_cum.sum(), n_cum.sum())),
                "local_nsr": float(n_loc.sum() / s_loc.sum().clamp(min=1e-30)),
                "cumulative_nsr": float(n_cum.sum() / s_cum.sum().clamp(min=1e-30)),
            }
        )
    del probe, reference
    sites = pl.DataFrame(summary).with_columns(
        pl.col("local_nsr").rank(method="ordinal", descending=True).cast(pl.Int64).alias("rank")
    )
    sites = sites.with_columns((pl.col("rank") <= TOP_SITES).alias("introduces"))
    return LocalErrorResult(pl.concat(frames), sites, diff, start)
