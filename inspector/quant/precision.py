"""Settings that every field accepts on its own but that lose the model together: said before a run.

Each QuantConfig field is checked against its own range (`QuantConfig.validate`), but two pairs of
widths work against each other, and a user who widens one of them to get *closer* to the float model
instead gets garbage, without any value clipping where the State saturation page would show it:

- **Integer RMSNorm.** Every norm computes r = floor(2^F / rms(x)) with F = `norm_frac_bits`, then
  x * r. For b-bit input codes the rms is near 2^(b-1) divided by the codes' crest factor, so r keeps
  only about F - b + 1 + log2(crest) bits: once the input is a few bits wider than F, r is a small
  integer and every norm output is coarse. Norms read the residual stream (`residual_bits`: the
  attention, MLP and final norms), the block activations (`act_bits`: the input norms of the i, f, g
  and gate projections) and the internal codes (`internal_bits`: g_norm and the o and down input norms).
- **Synaptic accumulator.** A BitLinear neuron sums up to fan-in graded spikes of `spike_bits`; the
  sum of N codes of random sign grows like sqrt(N) times their rms, so `accumulator_bits` needs about
  log2(N) / 2 bits above the spike width, or the accumulators clip (that, the saturation page counts).

The thresholds are measured, not derived: on the shakespeare sample model (bits/char on its whole
validation split, against the default's +0.06%; docs/integer-model.md), norm inputs F + 2 bits wide
cost nothing, F + 3 bits +1.6% to +14%, F + 4 bits over +100%; spike widths with 4 bits of
accumulator headroom (fan-in 768) +0.5%, 3 bits +8%, 2 bits +58%. The notes say what to change;
nothing is refused, since studying a broken setting is a use of this tool too.
"""

from __future__ import annotations

import math
from typing import Optional

from inspector import schema as S
from inspector.quant.config import QuantConfig, field_info

# The widths whose codes an integer RMSNorm reads (see above).
NORM_INPUT_WIDTHS = ("residual_bits", "act_bits", "internal_bits")
NORM_MARGIN = 3  # a norm input this many bits wider than norm_frac_bits (or more) gets a note


def max_fan_in(config) -> int:
    """The most graded spikes one BitLinear neuron of this model sums (an HGRNBit config)."""
    dims = S.Dims(d=config.hidden_size, m=config.mixer_size, ffn=config.mlp_intermediate_size)
    return max(S.size_of(p.inputs, dims) for p in S.PROJECTION_TABLE)


def accumulator_headroom(fan_in: int) -> int:
    """Bits a sum of `fan_in` spikes needs above the spike width: ceil(log2(fan_in) / 2)."""
    return math.ceil(math.log2(max(fan_in, 2)) / 2)


def precision_notes(qc: QuantConfig, fan_in: Optional[int] = None) -> list[str]:
    """What in these settings will cost the model most of its accuracy, each with what to change.

    `fan_in`: the model's largest BitLinear fan-in (`max_fan_in`); without it the accumulator is
    not checked. An empty list: nothing to say."""
    notes = []
    frac, frac_high = qc.norm_frac_bits, field_info("norm_frac_bits").bounds(qc)[1]
    for name in NORM_INPUT_WIDTHS:
        bits = getattr(qc, name)
        if bits >= frac + NORM_MARGIN:
            narrow = f"narrow {name} to {frac + NORM_MARGIN - 1} or less"
            fix = (
                f"raise norm_frac_bits to {bits - NORM_MARGIN + 1} or more, or {narrow}"
                if bits - NORM_MARGIN + 1 <= frac_high
                else f"narrow {name} to {frac_high + NORM_MARGIN - 1} or less and raise norm_frac_bits to {frac_high}"
            )
            notes.append(
                f"{name}={bits} with norm_frac_bits={frac}: the integer RMSNorms that read these codes keep only "
                f"a few bits of 1/rms (floor(2^{frac} / rms) of {bits}-bit codes is a small integer), so their "
                f"outputs are coarse (on the shakespeare sample model: +2% to +14% bits/char at {NORM_MARGIN} bits "
                f"wider than norm_frac_bits, over +100% from {NORM_MARGIN + 1}); {fix}"
            )
    if fan_in is not None:
        need = accumulator_headroom(fan_in)
        headroom = qc.accumulator_bits - qc.spike_bits
        if headroom < need:
            acc_high = field_info("accumulator_bits").bounds(qc)[1]
            spike_low = field_info("spike_bits").bounds(qc)[0]
            widen = f"widen accumulator_bits to {qc.spike_bits + need} or more"
            narrowest = qc.accumulator_bits - need
            if qc.spike_bits + need > acc_high:
                fix = f"narrow spike_bits to {acc_high - need} or less and widen accumulator_bits to {acc_high}"
            elif narrowest >= spike_low:
                fix = f"{widen}, or narrow spike_bits to {narrowest} or less"
            else:
                fix = widen
            left = f"{headroom} are left" if headroom >= 0 else f"the accumulator is {-headroom} bits narrower than the spikes"
            notes.append(
                f"spike_bits={qc.spike_bits} with accumulator_bits={qc.accumulator_bits}: a BitLinear neuron here "
                f"sums up to {fan_in} graded spikes, which takes about {need} bits above the spike width, and "
                f"{left}, so accumulators will clip (the State saturation page counts how often; on "
                f"the shakespeare sample model: +0.5% bits/char with 4 bits left, +58% with 2); {fix}"
            )
    return notes
