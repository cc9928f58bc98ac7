"""Facts for the guided tour, computed on the live model (no canned numbers)."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import polars as pl
import torch

from inspector import schema as S
from inspector.backends.base import BackendBase
from inspector.chip.costs import FITTED_NAME, preset
from inspector.chip.estimate import estimate
from inspector.chip.limits import HardwareConfig
from inspector.chip.mapper import DEFAULT_TERNARY_DENSITY, CoreMap, map_model
from inspector.compare.analysis import Analysis
from inspector.compare.diff import compare
from inspector.compare.local_error import local_vs_cumulative
from inspector.compare.traces import with_underflow
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.quant.config import QuantConfig
from inspector.quant.convert import convert
from inspector.quant.integer_model import IntegerLM
from inspector.quant.messaging import DELTA, DENSE, Messaging, transmit
from inspector.schema import PROJECTIONS
from inspector.views.figures import _layout


def ternary_counts(backend: BackendBase, layer: int = 0) -> dict[str, int]:
    """How many weights of a layer's projections are -1, 0 and +1."""
    L = backend.params.layers[layer]
    weights = torch.cat([p.weight.reshape(-1) for p in (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)])
    return {"-1": int((weights == -1).sum()), "0": int((weights == 0).sum()), "+1": int((weights == 1).sum())}


def worked_synapse_example(backend: BackendBase, analysis: Analysis, layer: int = 0, neuron: int = 0, token: int = -1) -> dict:
    """One output neuron of i_proj: its accumulator is a sum of +inputs minus a sum of -inputs."""
    L = backend.params.layers[layer]
    spikes = analysis.diff.int_probe.site_codes(S.layer_key(layer, S.spikes(S.I_PROJ)))[token]
    weights = L.i_proj.weight[neuron]
    plus = spikes[weights == 1]
    minus = spikes[weights == -1]
    total = int(plus.sum() - minus.sum())
    check = int(L.i_proj.accumulate(spikes[None])[0, neuron])
    return {
        "inputs": int(spikes.numel()),
        "plus_terms": int((plus != 0).sum()),
        "minus_terms": int((minus != 0).sum()),
        "sum_plus": int(plus.sum()),
        "sum_minus": int(minus.sum()),
        "accumulator": total,
        "matches_chip": total == check,
    }


def spike_code_figure(analysis: Analysis, layer: int = 0, token: int = -1) -> go.Figure:
    codes = analysis.diff.int_probe.site_codes(S.layer_key(layer, S.spikes(S.I_PROJ)))[token].numpy()
    fig = go.Figure(go.Histogram(x=codes, nbinsx=64, marker_color="#2ca02c", name="8-bit codes"))
    zero = int((codes == 0).sum())
    return _layout(
        fig, f"Graded spikes into layer {layer} i_proj at one token: {zero} of {codes.size} are 0 (no message)", "code",
        "neurons",
    )


# The saturation step's experiment: the user's settings beside two that lose values at either end
# of the register's range. Widths: the smallest the sidebar offers.
NARROWEST = {
    "act_bits": 3, "spike_bits": 3, "internal_bits": 6, "residual_bits": 3, "state_bits": 6, "gate_frac_bits": 4, "lut_bits": 6,
}
CLIPPING_HEADROOM = 0.25


def saturation_settings(qc: QuantConfig) -> dict[str, QuantConfig]:
    """The experiment's settings, by label: the user's, a state range 4x too small (clips), and
    every width at its minimum (values round to zero: underflow)."""
    return {
        "your settings": qc,
        f"state headroom {CLIPPING_HEADROOM} (the calibrated maximum is {1 / CLIPPING_HEADROOM:.0f}x beyond the state register)":
            qc.with_overrides({"state_headroom": CLIPPING_HEADROOM}),
        "every width at its minimum (" + ", ".join(f"{k}={v}" for k, v in NARROWEST.items()) + ")": qc.with_overrides(NARROWEST),
    }


def saturation_experiment(
    ids: list[int], settings: dict[str, QuantConfig], backend_for: Callable[[QuantConfig], BackendBase],
) -> pl.DataFrame:
    """Each setting's integer model on the same tokens, against the float model: how many MLGRU
    states clipped and underflowed, all values likewise, and what it did to the next-token choice."""
    rows = []
    for label, qc in settings.items():
        result = compare(backend_for(qc), ids, keep_from=len(ids) - 1)  # per-token counts only
        saturation = with_underflow(result.int_probe.saturation(), result.tensors)
        states = saturation.filter(pl.col("kind") == "state")
        rows.append({
            "setting": label,
            "state_bits": qc.state_bits,
            "state_headroom": qc.state_headroom,
            "states_clipped": float(states["clipped"].sum() / states["values"].sum()),
            "states_underflowed": float(states["underflow"].sum() / states["values"].sum()),
            "states_at_zero": float(states["zero"].sum() / states["values"].sum()),
            "values_clipped": int(saturation["clipped"].sum()),
            "values_underflowed": int(saturation["underflow"].sum()),
            "top1_agreement": float(result.tokens["agree"].mean()),
            "perplexity_int": result.perplexity_int,
        })
    return pl.DataFrame(rows)


def layer_op_counts(backend: BackendBase, layer: int = 0) -> dict[str, int]:
    """Per token in one layer: additions through ternary synapses vs the multiplies that remain.

    Synapses add or subtract (one per nonzero weight, when every input is nonzero). Multiplies are
    left per *neuron*, counted from the integer model's own operations (inspector.quant.integer_model):
    - nine RMSNorms (attn_norm, mlp_norm, g_norm and the input norm of each of the six BitLinears):
      per element a square, x * inverse root, and x * (gain and requantization folded): 3;
    - requantizations (a multiply and a shift) of every projection output (gate and y of gate_proj
      separately), of the input gate into the state, of the state read out, of the swish-gated and
      the GLU products;
    - gates: (1 - lb) * f (layers with a lower bound), silu(i) * (1 - f), f * h, g_norm * swish(h),
      silu(gate) * y;
    - residual adds: each operand rescaled to the sum's scale (two multiplies per element, two adds).
    """
    L = backend.params.layers[layer]
    projections = (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)
    D = int(L.attn_norm.weight_q.numel())
    M = int(L.f_proj.weight.shape[0])
    inner = int(L.gate_proj.weight.shape[0]) // 2
    norm_widths = [D, int(L.mlp_norm.weight_q.numel()), int(L.g_norm.weight_q.numel())]
    norm_widths += [int(p.norm.weight_q.numel()) for p in projections]
    # i, f, g, input_to_state, state_to_code, gated output, o, gate, y, glu, down
    requant_widths = [M, M, M, M, M, M, D, inner, inner, inner, D]
    gate_widths = [M, M, M, inner] + ([M] if L.lower_bound_q is not None else [])
    counts = {
        "synapse_additions": sum(int((p.weight != 0).sum()) for p in projections),
        "norms": len(norm_widths),
        "norm_multiplies": 3 * sum(norm_widths),
        "requantize_multiplies": sum(requant_widths),
        "gate_multiplies": sum(gate_widths),
        "residual_multiplies": 2 * 2 * D,
    }
    kinds = ("norm_multiplies", "requantize_multiplies", "gate_multiplies", "residual_multiplies")
    counts["multiplies"] = sum(counts[k] for k in kinds)
    return counts


def host_share(backend: BackendBase) -> dict[str, float]:
    """How big the LM head (kept on the host) is next to a layer's stored ternary synapses."""
    cfg = backend.loaded.config
    lm_head = int(cfg.vocab_size) * int(cfg.hidden_size)
    per_layer = layer_op_counts(backend)["synapse_additions"]
    return {"lm_head_weights": lm_head, "lm_head_in_layers": lm_head / max(per_layer, 1)}


# -- step 3: the MLGRU memory, per layer -----------------------------------------------------------
def forget_memory(analysis: Analysis, gate_frac_bits: int) -> pl.DataFrame:
    """Per layer, from the integer model's forget-gate codes over the run's kept tokens: the mean
    forget gate f, the learned lower bound's mean, and the memory in tokens, 1 / (1 - f) (the number
    of past tokens a leaky average with factor f spans), as a mean and a median over neurons and tokens.

    1 / (1 - f) is averaged per neuron and token, so a few slow neurons (f near 1) pull the mean above
    the median: the median neuron forgets much faster than the mean suggests."""
    probe, one = analysis.diff.int_probe, float(1 << gate_frac_bits)
    rows = []
    layer = 0
    while probe.has_values(S.layer_key(layer, S.FORGET_GATE)):
        f = probe.site_codes(S.layer_key(layer, S.FORGET_GATE)).double().numpy() / one
        memory = 1.0 / np.maximum(1.0 - f, 1.0 / one)  # f = 1 in fixed point would be an endless memory: cap at 2^Q tokens
        rows.append({
            "layer": layer, "mean_forget_gate": float(f.mean()), "min_forget_gate": float(f.min()),
            "mean_memory_tokens": float(memory.mean()), "median_memory_tokens": float(np.median(memory)),
        })
        layer += 1
    return pl.DataFrame(rows)


def lower_bounds(backend: BackendBase) -> list[float]:
    """Mean learned lower bound of the forget gate per layer (0 in layer 0, which has none)."""
    one = float(1 << backend.qc.gate_frac_bits)
    return [0.0 if L.lower_bound_q is None else float(L.lower_bound_q.double().mean()) / one for L in backend.params.layers]


def tour_neuron(analysis: Analysis, layer: int = 0) -> int:
    """The neuron the tour follows: layer 0's MLGRU neuron with the largest mean |h| in the float
    model (its state moves the most, so it is the easiest to watch). Channel n is the same neuron
    through i_proj, f_proj, g_proj (outputs n), the MLGRU (state h_n) and the swish gate."""
    h = analysis.diff.float_values[S.layer_key(layer, S.HIDDEN)].abs().mean(dim=0)
    return int(torch.argmax(h))


# -- step 4: messaging ----------------------------------------------------------------------------
def sent_mask(codes: np.ndarray, mode: str, vth: int = 0) -> np.ndarray:
    """Which neurons send a message at each token under a messaging mode of the integer model
    (`inspector.quant.messaging`: dense = nonzero codes, delta = Lava's sigma-delta, threshold).
    `codes`: (tokens, neurons) int, from a fresh sequence. Returns a (tokens, neurons) bool mask.
    Under delta with vth 0 a neuron sends exactly when its code changed (the first token: nonzero codes)."""
    _, sent, _ = transmit(torch.as_tensor(codes, dtype=torch.int64)[None], Messaging(mode, int(vth)))
    return (sent[0] != 0).numpy()


def message_counts(analysis: Analysis, backend: BackendBase, vth: int = 2) -> pl.DataFrame:
    """Messages and synaptic ops per token into every layer's ternary synapses, under four encodings,
    all computed from the run's own spike codes (the kept tokens):

    - every neuron: every neuron sends every token (a clocked, non-event-driven design);
    - graded spikes (nonzero): the integer model's `dense` messaging, only nonzero codes are sent;
    - sigma-delta (changes): `delta` at vth 0, only codes that changed since the neuron's last message
      (lossless: the receivers hold the exact codes);
    - sigma-delta, vth V: `delta` at vth V, only changes of at least V codes (lossy: the receiver's
      copy lags the true code by less than V).

    A message from input j costs one synaptic op per nonzero weight in column j of the projection.
    The masks come from the integer model's own messaging code (`inspector.quant.messaging`), the
    same that runs when the sidebar sets a group to delta.
    """
    probe = analysis.diff.int_probe
    rows = []
    for layer, L in enumerate(backend.params.layers):
        for name in PROJECTIONS:
            key = S.layer_key(layer, S.spikes(name))
            if not probe.has_values(key):
                continue
            codes = probe.site_codes(key).numpy().astype(np.int64)
            fan_out = (getattr(L, name).weight != 0).sum(dim=0).numpy()  # synapses per input neuron
            masks = {
                "every neuron": np.ones(codes.shape, dtype=bool),
                "graded spikes (nonzero)": sent_mask(codes, DENSE),
                "sigma-delta (changes)": sent_mask(codes, DELTA, 0),
                f"sigma-delta, vth {vth}": sent_mask(codes, DELTA, vth),
            }
            for encoding, mask in masks.items():
                rows.append({
                    "layer": layer, "projection": name, "encoding": encoding,
                    "messages_per_token": float(mask.sum()) / codes.shape[0],
                    "synops_per_token": float((mask * fan_out).sum()) / codes.shape[0],
                })
    return pl.DataFrame(rows)


def messaging_totals(counts: pl.DataFrame) -> pl.DataFrame:
    """The whole model's messages and synaptic ops per token per encoding, and their share of the
    synaptic ops when every neuron sends every token."""
    totals = counts.group_by("encoding", maintain_order=True).agg(pl.col("messages_per_token", "synops_per_token").sum())
    every = totals.filter(pl.col("encoding") == "every neuron").row(0, named=True)
    return totals.with_columns((pl.col("synops_per_token") / every["synops_per_token"]).alias("share_of_every_neuron"))


# -- step 7: from a layer to neuro-cores ----------------------------------------------------------
def group_split(core_map: CoreMap, layer: int = 0) -> pl.DataFrame:
    """Per fused neuron group of one layer: neurons, stored synapses, cores, and the limit that decides
    how many cores it takes (the one that alone would need the most cores)."""
    hw = core_map.hardware
    rows = []
    for group in (g for g in core_map.groups if g.layer == layer):
        cores = int(core_map.table.filter((pl.col("layer") == layer) & (pl.col("group") == group.name)).height)
        synapse_bytes = int(group.synapses.sum()) * hw.bits_per_synapse / 8
        need = {
            "synapse memory": synapse_bytes / hw.synapse_memory_bytes,
            "core SRAM": (synapse_bytes + group.neurons * hw.bytes_per_neuron) / hw.core_sram_bytes,
            "neurons per core": group.neurons / hw.max_neurons_per_core,
        }
        limit = max(need, key=lambda k: need[k])
        rows.append({
            "group": group.name, "neurons": group.neurons, "synapses": int(group.synapses.sum()), "cores": cores,
            "deciding_limit": limit if cores > 1 else "none (fits one core)",
            "synapse_memory_use": need["synapse memory"],
        })
    return pl.DataFrame(rows)


def published_mapping(name: str = "MMfreeLM-370M", hw: HardwareConfig | None = None) -> dict[str, float]:
    """The mapper on a published model's shapes alone (no weights: synapse counts assume the typical
    ternary density, `DEFAULT_TERNARY_DENSITY`): cores, chips, and cores per layer."""
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    core_map = map_model(config, hw)
    per_layer = core_map.table.filter(pl.col("layer") == 0)["core"].n_unique()
    return {
        "layers": config.num_hidden_layers, "hidden_size": config.hidden_size, "cores": core_map.cores,
        "chips": core_map.chips, "cores_per_layer": per_layer, "density": DEFAULT_TERNARY_DENSITY,
    }


# -- step 8: where the energy goes ----------------------------------------------------------------
# The paper's 24-chip measurement of MMfreeLM-370M (Abreu et al., arXiv 2503.18002, Tables 1-3 as
# reported by a third-party summary that reproduces every ratio of the abstract).
PAPER_SOURCE = "Abreu et al., arXiv 2503.18002, Loihi 2 measurement of MMfreeLM-370M on 24 chips (as reported)"
PAPER_CHIPS = 24
PAPER_GENERATION = {"mj_per_token": 405.0, "tokens_per_s": 41.5}
PAPER_PREFILL = {"mj_per_token": 3.7, "tokens_per_s": 6632.0}


def paper_energy() -> dict[str, float]:
    """Arithmetic from the reported figures (not reported themselves): system power in each phase,
    and the dynamic energy per token as the extra power of prefill over its token rate."""
    gen_w = PAPER_GENERATION["mj_per_token"] * 1e-3 * PAPER_GENERATION["tokens_per_s"]
    pre_w = PAPER_PREFILL["mj_per_token"] * 1e-3 * PAPER_PREFILL["tokens_per_s"]
    dynamic_mj = (pre_w - gen_w) / PAPER_PREFILL["tokens_per_s"] * 1e3
    return {
        "chips": PAPER_CHIPS, "generation_w": gen_w, "prefill_w": pre_w, "dynamic_mj_per_token": dynamic_mj,
        "generation_mj_per_token": PAPER_GENERATION["mj_per_token"],
        "prefill_mj_per_token": PAPER_PREFILL["mj_per_token"],
        "static_share_generation": 1 - dynamic_mj / PAPER_GENERATION["mj_per_token"],
        "ms_per_token": 1e3 / PAPER_GENERATION["tokens_per_s"],
    }


def energy_split(analysis: Analysis, backend: BackendBase) -> dict[str, float]:
    """This model's estimated energy per generated token, static vs dynamic, from the app's chip
    estimate (`inspector.chip.estimate`) on the run's measured activity. The one place the tour reads the
    estimate, so a refitted estimate changes the step without touching the page."""
    costs = preset(FITTED_NAME)
    est = estimate(analysis.tables["activity"], backend.core_map.chips, costs.costs)
    g = est.generation
    return {
        "preset": costs.name, "chips": est.chips, "static_mj": g.static_mj, "synops_mj": g.synops_mj, "neuron_mj": g.neuron_mj,
        "message_mj": g.message_mj, "dynamic_mj": g.dynamic_mj, "total_mj": g.energy_per_token_mj,
        "static_share": g.static_mj / g.energy_per_token_mj, "ms_per_token": g.seconds_per_token * 1e3,
    }


# -- hands-on sweeps (steps 2 and 5) --------------------------------------------------------------
SPIKE_BITS_SWEEP = (8, 6, 5, 4)
STATE_BITS_SWEEP = (24, 12, 10, 8)


def variant(backend: BackendBase, overrides: dict) -> BackendBase:
    """The same model under other bit widths, reusing the backend's calibration (calibration is a
    float pass that does not depend on the widths) and core map (the widths do not move synapses):
    converting takes well under a second where calibrating again would take several."""
    qc = backend.qc.with_overrides(overrides)
    other = copy.copy(backend)
    other.qc = qc
    other.params = convert(backend.loaded.model, backend.calibration, qc)
    other.integer = IntegerLM(other.params, backend.loaded.model)
    return other


def bits_sweep(backend: BackendBase, ids: list[int], name: str, values: tuple[int, ...]) -> pl.DataFrame:
    """One width (`spike_bits` or `state_bits`) at each of `values`, everything else as the user set it:
    the integer model on the run's tokens against the float model. Per setting: top-1 agreement, mean
    KL, the share of nonzero spikes into the synapses, and the MLGRU states that underflowed or clipped."""
    rows = []
    for bits in values:
        result = compare(variant(backend, {name: bits}), ids, keep_from=len(ids) - 1)  # per-token counts only
        saturation = with_underflow(result.int_probe.saturation(), result.tensors)
        spikes = saturation.filter(pl.col("site").str.ends_with(".spikes") & (pl.col("layer") >= 0))
        states = saturation.filter(pl.col("kind") == "state")
        rows.append({
            name: bits,
            "top1_agreement": float(result.tokens["agree"].mean()),
            "mean_kl": float(result.tokens["kl"].mean()),
            "nonzero_spikes": float((spikes["values"].sum() - spikes["zero"].sum()) / spikes["values"].sum()),
            "states_underflowed": float(states["underflow"].sum() / states["values"].sum()),
            "states_clipped": float(states["clipped"].sum() / states["values"].sum()),
        })
    return pl.DataFrame(rows)


# -- step 6: local vs cumulative error ------------------------------------------------------------
def local_cumulative_sqnr(backend: BackendBase, ids: list[int], site: str = S.RESIDUAL_MLP) -> pl.DataFrame:
    """Per layer, one site's SQNR from its own rounding alone (local) and with everything it inherits
    (cumulative), on the run's tokens (`inspector.compare.local_error`, teacher-forced), and the two noise-to-signal
    ratios they come from."""
    result = local_vs_cumulative(backend, ids)
    return (
        result.sites.filter((pl.col("site") == site) & (pl.col("layer") >= 0))
        .select("layer", "local_sqnr_db", "cumulative_sqnr_db", "local_nsr", "cumulative_nsr").sort("layer")
    )
