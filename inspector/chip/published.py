"""Activity of the published MMfreeLM sizes (370M, 1.3B, 2.7B), measured by running them one layer at a time.

The published checkpoints are not shipped with the app, and the whole 370M integer model takes about
10 GB (1.3B and 2.7B would not fit a 24 GB machine). But the activity of a layer (messages, synaptic
operations per neuron and token) only depends on that layer's weights and on its inputs. So each
published configuration is really run, with random weights, one layer at a time:

1. random token ids; their embedding rows drawn as the reference initializes embeddings;
2. for each layer: build the block with the reference initialization (`HGRNBitForCausalLM.reset_parameters`:
   N(0, 0.02), Xavier with gain 2^-2.5 in the mixer, residual outputs scaled by 1/sqrt(2L); lower
   bounds at their zero initialization), calibrate it on the float inputs the previous layers
   produced (min/max observers, exactly as `inspector.quant.calibrate` does for a whole model),
   convert it to integers, run the integer layer with probes on the integer codes the previous
   integer layers produced, keep its per-neuron activity and its synapse counts, and free it;
3. the final norm likewise.

At most one layer is alive at a time, so the peak memory is about one layer's float and integer
weights. With the same weights this is bit for bit what the whole-model emulator measures (tested
on a small model). Results are labeled with the weights that produced them ("random weights
(reference initialization, seed S)") and cached by `inspector.chip.activity_cache`, keyed by a hash of
`MEASUREMENT_SOURCES` among other things.
"""

from __future__ import annotations

import gc
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from inspector import schema as S
from inspector.chip.activity import GroupActivity
from inspector.chip.limits import HardwareConfig
from inspector.chip.mapper import CoreMap, NeuronGroup, layer_groups, map_groups, neuron_group
from inspector.chip.probes import RecordingProbe
from inspector.errors import InspectorError
from inspector.lm.config import HGRNBitConfig
from inspector.lm.memory import peak_resident_bytes
from inspector.lm.model import Block, RMSNorm
from inspector.quant import messaging
from inspector.quant.calibrate import CHUNK, observe, observe_modules, observe_trace
from inspector.quant.config import QuantConfig
from inspector.quant.convert import IntegerParams, convert_final_norm, convert_layer, site_scale
from inspector.quant.integer_model import IntegerLM, Senders
from inspector.schema import PROJECTIONS

MEASURE_TOKENS = 32  # tokens whose activity is recorded (the first tokens of the calibration sequence)
# the sources whose code decides a measurement's numbers: a change to any of them invalidates cached ones
MEASUREMENT_SOURCES = (
    "chip/published.py", "lm/model.py", "quant/calibrate.py", "quant/convert.py", "quant/integer_model.py",
    "quant/kernels.py", "quant/config.py", "chip/probes.py", "chip/mapper.py",
)
ProgressFn = Callable[[int, int, str], None]  # (done, total, what)


class MeasurementError(InspectorError):
    pass


@dataclass
class MeasuredActivity:
    """Per-neuron activity of a whole model and its neuron groups, however it was measured."""

    model: str
    weights: str  # which weights produced it, for labels
    groups: list[NeuronGroup]
    activity: GroupActivity
    meta: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return next(iter(self.activity.values()))[0].shape[0]

    def core_map(self, hw: HardwareConfig | None = None, share_cores: bool = False) -> CoreMap:
        return map_groups(self.groups, hw or HardwareConfig(), share_cores)


def code_version() -> str:
    """A hash of `MEASUREMENT_SOURCES`: a code change that could change the numbers invalidates old caches."""
    root = Path(__file__).resolve().parents[1]  # the inspector package
    digest = hashlib.sha256()
    for name in MEASUREMENT_SOURCES:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


# -- the reference's random model, one piece at a time -------------------------------------------
def random_block(config: HGRNBitConfig, idx: int, generator: torch.Generator) -> Block:
    """Layer `idx` with the reference initialization (as `HGRNBitForCausalLM.reset_parameters`)."""
    block = Block(config, idx)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range, generator=generator)
        for proj in (block.attn.i_proj, block.attn.f_proj, block.attn.g_proj, block.attn.o_proj):
            nn.init.xavier_uniform_(proj.weight, gain=2**-2.5, generator=generator)
        scale = (2 * config.num_hidden_layers) ** 0.5
        block.attn.o_proj.weight /= scale
        block.mlp.down_proj.weight /= scale
    return block


def zero_init_lower_bounds(config: HGRNBitConfig) -> Optional[torch.Tensor]:
    """`HGRNBitModel.layer_lower_bounds()` for lower bounds at their zero initialization."""
    if not config.use_lower_bound:
        return None
    probs = torch.zeros(config.num_hidden_layers, config.hidden_size).softmax(dim=0)
    return probs.cumsum(dim=0) - probs[0]


# -- the layer-wise run ----------------------------------------------------------------------------
def _integer_runner(config: HGRNBitConfig, qc: QuantConfig, layers: list, input_scale: float, embed) -> IntegerLM:
    """An IntegerLM holding only the given layers (no LM head): what a layer-wise run needs."""
    params = IntegerParams(qc, input_scale, layers, None, {})
    host = SimpleNamespace(model=SimpleNamespace(embeddings=embed), lm_head=None, config=config)
    return IntegerLM(params, host)


@torch.no_grad()
def measure_layerwise(
    config: HGRNBitConfig,
    qc: QuantConfig,
    block_for: Callable[[int], Block],
    embed: Callable[[torch.Tensor], torch.Tensor],
    lower_bounds: Optional[torch.Tensor],
    final_norm: RMSNorm,
    calibration_ids: list[int],
    ids: list[int],
    on_progress: Optional[ProgressFn] = None,
) -> tuple[list[NeuronGroup], GroupActivity]:
    """Calibrate, convert and run the integer model one layer at a time; per-neuron activity on `ids`.

    `block_for(k)` returns layer k's float block (built on demand: it is dropped after use).
    """
    if len(calibration_ids) < 2:
        raise MeasurementError("calibration needs at least two tokens")
    layers_total = config.num_hidden_layers
    cal: dict[str, float] = {}
    x_float = embed(torch.tensor([calibration_ids])).float()
    observe(cal, S.EMBEDDINGS, x_float)
    input_scale = site_scale(cal[S.EMBEDDINGS], qc.residual_bits, qc)
    runner = _integer_runner(config, qc, [], input_scale, embed)
    x_int, _ = runner.embed(torch.tensor([ids]))
    groups: list[NeuronGroup] = []
    activity: GroupActivity = {}
    x_scale = input_scale
    hw = HardwareConfig()
    for k in range(layers_total):
        if on_progress is not None:
            on_progress(k, layers_total + 1, f"layer {k + 1} of {layers_total}")
        block = block_for(k)
        bound = lower_bounds[k] if lower_bounds is not None else None
        handles = observe_modules(block, f"model.layers.{k}.", cal)
        try:
            outputs, state = [], None
            for start in range(0, x_float.shape[1], CHUNK):
                if on_progress is not None and start:  # also between chunks: a cancelled job stops here
                    on_progress(k, layers_total + 1, f"layer {k + 1} of {layers_total}")
                trace: dict[str, torch.Tensor] = {}
                out, state = block(x_float[:, start : start + CHUNK], bound, state, trace, S.layer_key(k, ""))
                observe_trace(cal, trace)
                outputs.append(out)
        finally:
            for handle in handles:
                handle.remove()
        x_float = torch.cat(outputs, dim=1)
        int_layer = convert_layer(k, block, bound, x_scale, cal, qc)
        del block, outputs
        x_scale = int_layer.scales[S.RESIDUAL_MLP]
        weights = {name: getattr(int_layer, name).weight for name in PROJECTIONS}
        local = [NeuronGroup(0, g.name, g.synapses, g.fan_in) for g in layer_groups(config, 0, weights)]
        probe = RecordingProbe(map_groups(local, hw), record_tensors=False)
        probe.site(S.EMBEDDINGS, x_int, x_scale, None, S.ACTIVATION)  # the layer's input; the probe counts tokens by it
        runner.params.layers[:] = [int_layer]
        senders = Senders(qc, int_layer, None) if messaging.event_driven(qc) else None  # a fresh sequence
        x_int, _ = runner.block(0, x_int, torch.zeros(1, config.mixer_size, dtype=x_int.dtype), probe, senders)
        for (_, name), (messages, synops) in probe.group_activity().items():
            synops = np.rint(synops)
            activity[(k, name)] = (
                messages.astype(np.uint8), synops.astype(np.uint16 if synops.max(initial=0) < 2**16 else np.int32),
            )
        groups.extend(NeuronGroup(k, g.name, g.synapses, g.fan_in) for g in local)
        runner.params.layers.clear()
        del int_layer, weights, probe, local
        gc.collect()
    if on_progress is not None:
        on_progress(layers_total, layers_total + 1, "final norm")
    observe(cal, S.FINAL_NORM, final_norm(x_float))
    codes, _ = convert_final_norm(final_norm, x_scale, cal, qc)(x_int)
    messages = (codes[0] != 0).numpy().astype(np.uint8)
    activity[(-1, S.FINAL_NORM_GROUP)] = (messages, np.zeros_like(messages, dtype=np.uint16))
    groups.append(neuron_group(config, -1, S.FINAL_GROUP))
    if on_progress is not None:
        on_progress(layers_total + 1, layers_total + 1, "done")
    return groups, activity


def random_weights_label(seed: int) -> str:
    return f"random weights (reference initialization, seed {seed})"


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return peak_resident_bytes()


def measure_random(
    name: str, config: HGRNBitConfig, qc: QuantConfig, tokens: int = MEASURE_TOKENS, calibration_tokens: Optional[int] = None,
    seed: int = 0, on_progress: Optional[ProgressFn] = None,
) -> MeasuredActivity:
    """Run `config` with random weights one layer at a time (see the module docstring)."""
    calibration_tokens = calibration_tokens or qc.calibration_tokens
    if tokens > calibration_tokens:
        raise MeasurementError(f"tokens ({tokens}) must not exceed calibration_tokens ({calibration_tokens})")
    gen = torch.Generator().manual_seed(seed)
    calibration_ids = torch.randint(0, config.vocab_size, (calibration_tokens,), generator=gen).tolist()
    unique = sorted(set(calibration_ids))
    rows = torch.randn(len(unique), config.hidden_size, generator=gen) * config.initializer_range
    row_of = torch.full((config.vocab_size,), -1, dtype=torch.long)
    row_of[torch.tensor(unique)] = torch.arange(len(unique))

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return rows[row_of[ids]]

    start = time.perf_counter()
    groups, activity = measure_layerwise(
        config, qc, lambda k: random_block(config, k, torch.Generator().manual_seed(seed * 100_003 + k + 1)), embed,
        zero_init_lower_bounds(config), RMSNorm(config.hidden_size, eps=config.rms_norm_eps),
        calibration_ids, calibration_ids[:tokens], on_progress,
    )
    meta = {
        "tokens": tokens, "calibration_tokens": calibration_tokens, "seed": seed,
        "token_ids": "uniform random over the vocabulary",
        "seconds": round(time.perf_counter() - start, 1), "peak_rss_bytes": peak_rss_bytes(), "code": code_version(),
        "qc": asdict(qc),
    }
    return MeasuredActivity(name, random_weights_label(seed), groups, activity, meta)
