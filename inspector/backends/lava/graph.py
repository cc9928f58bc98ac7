"""The integer model as a Lava process graph, run token by token in `Loihi2SimCfg(select_tag="fixed_pt")`.

Wiring only: the processes are in processes.py, their fixed-point models in models.py, the data
they are built from in params.py. Per layer (see processes.py for what each group computes):

    x ─┬─> NormAttn ─s_i,s_f,s_g─> Dense i,f,g ─> ProjIFG ─> MLGRU ─s_o─> Dense o ─> ProjO ─┐
       └─> NormMlp (keeps x) <──────────────────────────────────────────────────────────────┘
             │ s_gate ─> Dense gate ─> ProjGate ─> GLU ─s_down─> Dense down ─> ProjDown ─┐
             └ r ─> Residual (keeps r) <──────────────────────────────────────────────────┘
                      └─> x of the next layer (after the last: FinalNorm ─> host)

- Lava's own processes: `Dense` for every synapse (the model's only weights; ternary, graded
  spikes, see synapses.py); `Injector` and `Extractor` (lava.proc.io) for the host's way in and out.
- Nine custom processes per layer, one per neuron group of the core map, and `FinalNorm`.
- Host side, as in the emulator and the paper: the embedding lookup and the LM head.

Timing: a process receives and sends in the same time step; a `Dense` delivers at t + 1 what
reached it at t. So a layer takes four steps (one per synapse stage) and a token 4 * layers + 1.
Every group process also sends its part of its layer's readback message (params.ReadbackLayout);
all nine are connected to one Extractor per layer, whose InPort adds them up.

On Loihi 2 (`run_config("loihi2")`, untested: no system was available) Dense maps to the chip's
synapses; the group processes would run their Python models on the host CPU until someone writes
microcode neuron programs for them (docs/lava.md lists what each would need).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from inspector import schema as S
from inspector.backends.lava.params import GraphSpec, SynapseWeights
from inspector.lava_compat import install

install()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg, RunConfig  # noqa: E402
from lava.proc.dense.models import PyDenseModelBitAcc  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel  # noqa: E402
from lava.proc.io.injector import Injector, PyLoihiInjectorModel  # noqa: E402
from lava.proc.io.utils import ChannelConfig, ReceiveEmpty  # noqa: E402

from inspector.backends.lava import models  # noqa: E402
from inspector.backends.lava.processes import (  # noqa: E402
    CONTROL,
    DENSE_INPUT,
    GLU,
    MLGRU,
    RESIDUAL_OUT,
    FinalNorm,
    NormAttn,
    NormMlp,
    ProjDown,
    ProjGate,
    ProjIFG,
    ProjO,
    Residual,
)
from inspector.backends.lava.synapses import ternary_dense  # noqa: E402

# Our processes and their models, named for Lava's compiler (instead of its search through every
# module beside the process's, which executes each of them once per process).
PROCESS_MODELS = {
    NormAttn: models.PyNormAttnModel,
    ProjIFG: models.PyProjIFGModel,
    MLGRU: models.PyMLGRUModel,
    ProjO: models.PyProjOModel,
    NormMlp: models.PyNormMlpModel,
    ProjGate: models.PyProjGateModel,
    GLU: models.PyGLUModel,
    ProjDown: models.PyProjDownModel,
    Residual: models.PyResidualModel,
    FinalNorm: models.PyFinalNormModel,
}


def token_message(codes: np.ndarray, reset: bool) -> np.ndarray:
    """The message that carries one token's codes into the first layer: [codes, reset, valid]."""
    return np.concatenate([np.asarray(codes, dtype=np.int32), np.array([int(reset), 1], dtype=np.int32)])


def flagged_dense(weight: np.ndarray, message_bits: int) -> Dense:
    """Ternary synapses plus one synapse per control element (reset, valid), carried through as is;
    graded spikes of `message_bits` (QuantConfig.message_bits, which bounds every width sent)."""
    out_features, in_features = weight.shape
    w = np.zeros((out_features + CONTROL, in_features + CONTROL), dtype=np.int32)
    w[:out_features, :in_features] = weight
    for k in range(1, CONTROL + 1):
        w[-k, -k] = 1
    return ternary_dense(w, message_bits=message_bits)


@dataclass
class TokenReadback:
    """What the host reads back after one token: per layer, the sum of the readback messages its
    group processes sent (params.ReadbackLayout), and FinalNorm's [codes, clipped, rounds, valid]."""

    layers: list[np.ndarray]
    final: np.ndarray


TARGETS = ("sim", "loihi2")


def run_config(target: str, processes: tuple = ()) -> RunConfig:
    """How Lava runs the graph: "sim" is Lava's fixed-point simulator; "loihi2" is a Loihi 2 system.

    Every process model is named here rather than found by Lava's search, which executes every
    module beside a process's own (and those of its parent package) once per process instance:
    most of a minute for a sample model's graph. Lava's compiler skips that search only for
    process *instances* named in `exception_proc_model_map`, so `processes` (the graph's) are named
    one by one; classes are named too, for Lava's model selection.

    Injector and Extractor have one (untagged) Python model each; they run on the host in both
    cases. On Loihi 2, `Dense` is left to `Loihi2HwCfg`, which picks lava-loihi's neuro-core model,
    and, as it documents, falls back to the Python models of our group processes, which then run
    on the host CPU next to the chip (microcode neuron programs would move them onto the neuro-cores).
    """
    if target not in TARGETS:
        raise ValueError(f"no Lava target {target!r}; expected one of {TARGETS}")
    models_by_class = {Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel, **PROCESS_MODELS}
    if target == "sim":
        models_by_class[Dense] = PyDenseModelBitAcc  # the fixed-point (bit-accurate) Dense model
    named = dict(models_by_class)
    for process in processes:
        if type(process) in models_by_class:
            named[process] = models_by_class[type(process)]
    if target == "sim":
        return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=named)
    return Loihi2HwCfg(exception_proc_model_map=named)


class LayerProcesses:
    """The nine group processes of one layer and the four synapse stages between them."""

    def __init__(self, spec: GraphSpec, idx: int, weights: dict[str, np.ndarray]):
        layer, layout = spec.layers[idx], spec.layout
        acc_bits, msg = spec.qc_accumulator_bits, spec.messaging
        # the layer input: the host's embedding codes (dense) or the previous layer's residual messages
        layer_input = msg[RESIDUAL_OUT] if idx > 0 else DENSE_INPUT
        self.norm_attn = NormAttn(layer, layout, msg, layer_input)
        self.proj_ifg = ProjIFG(layer, layout, acc_bits, msg)
        self.mlgru = MLGRU(layer, layout, spec.qc_internal_bits, spec.qc_gate_frac_bits, spec.qc_state_bits, msg)
        self.proj_o = ProjO(layer, layout, acc_bits, msg)
        self.norm_mlp = NormMlp(layer, layout, msg, layer_input)
        self.proj_gate = ProjGate(layer, layout, acc_bits, msg)
        self.glu = GLU(layer, layout, spec.qc_internal_bits, msg)
        self.proj_down = ProjDown(layer, layout, acc_bits, msg)
        self.residual = Residual(layer, layout, msg)
        synapses = (
            (S.I_PROJ, self.norm_attn.s_i, self.proj_ifg.acc_i),
            (S.F_PROJ, self.norm_attn.s_f, self.proj_ifg.acc_f),
            (S.G_PROJ, self.norm_attn.s_g, self.proj_ifg.acc_g),
            (S.O_PROJ, self.mlgru.s_o, self.proj_o.acc_o),
            (S.GATE_PROJ, self.norm_mlp.s_gate, self.proj_gate.acc_gate),
            (S.DOWN_PROJ, self.glu.s_down, self.proj_down.acc_down),
        )
        self.dense = {}
        for name, spikes, accumulator in synapses:
            dense = flagged_dense(weights[name], spec.qc_message_bits)
            spikes.connect(dense.s_in)
            dense.a_out.connect(accumulator)
            self.dense[name] = dense
        self.proj_ifg.ifg_out.connect(self.mlgru.ifg_in)
        self.proj_o.o_out.connect(self.norm_mlp.o_in)
        self.norm_mlp.r_out.connect(self.residual.r_in)
        self.proj_gate.gy_out.connect(self.glu.gy_in)
        self.proj_down.d_out.connect(self.residual.d_in)
        self.tap = Extractor(shape=(layout.size,), buffer_size=4 * len(spec.layers) + 2)
        for process in self.groups:
            process.readback.connect(self.tap.in_port)

    @property
    def groups(self) -> tuple:
        return (self.norm_attn, self.proj_ifg, self.mlgru, self.proj_o, self.norm_mlp,
                self.proj_gate, self.glu, self.proj_down, self.residual)

    def connect_input(self, upstream) -> None:
        """The layer input goes to the attention norm and, for the residual add, to NormMlp."""
        upstream.connect(self.norm_attn.x_in)
        upstream.connect(self.norm_mlp.x_in)


class LavaGraph:
    """The layers of the integer model as a Lava process graph, fed one token's codes at a time.

    The host talks to the running graph through Lava's own `Injector` (token messages in) and
    `Extractor`s (one per layer and one for FinalNorm: readback messages out). Both move whole
    vectors through a pipe; reading Vars instead costs one message per element.
    """

    def __init__(self, spec: GraphSpec, weights: SynapseWeights, target: str = "sim"):
        self.spec = spec
        hidden = spec.layers[0].hidden
        # Four synapse stages per layer, one step for the input; fewer would only mean polling.
        self.steps_per_token = 4 * len(spec.layers) + 1
        self.source = Injector(
            shape=(hidden + CONTROL,), buffer_size=2,
            channel_config=ChannelConfig(receive_empty=ReceiveEmpty.NON_BLOCKING_ZEROS),
        )
        self.layers = []
        upstream = self.source.out_port
        for idx in range(len(spec.layers)):
            layer = LayerProcesses(spec, idx, weights[idx])
            layer.connect_input(upstream)
            self.layers.append(layer)
            upstream = layer.residual.x_out
        self.final = FinalNorm(spec.final_norm, spec.messaging[RESIDUAL_OUT])
        upstream.connect(self.final.x_in)
        self.final_tap = Extractor(shape=(2 * hidden + 2,), buffer_size=self.steps_per_token + 1)
        self.final.readback.connect(self.final_tap.in_port)
        self.run_cfg = run_config(target, self.processes())
        self.started = False
        self.next_reset = True

    def processes(self) -> tuple:
        """Every process of the graph."""
        found = [self.source, self.final, self.final_tap]
        for layer in self.layers:
            found += [*layer.groups, *layer.dense.values(), layer.tap]
        return tuple(found)

    def close(self) -> None:
        if self.started:
            self.source.stop()
            self.started = False

    def _start(self) -> None:
        if not self.started:
            with warnings.catch_warnings():
                # On Loihi 2, Lava's model search (for Dense) executes every module beside
                # lava.proc.dense under a bare name and warns about those it cannot import.
                warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
                self.source.create_runtime(run_cfg=self.run_cfg)
            self.started = True

    def reset_state(self) -> None:
        """Start a new sequence: the next token tells every layer to zero its state first."""
        self.next_reset = True

    def set_state(self, states: list[np.ndarray]) -> None:
        """Load the MLGRU states of every layer (continuing a sequence the host holds the state of)."""
        for layer, h in zip(self.layers, states, strict=True):
            value = np.asarray(h, dtype=np.int32).reshape(layer.mlgru.h.shape)
            if self.started:  # the runtime runs (token() starts it and runs it at once)
                layer.mlgru.h.set(value)
            else:  # not compiled yet: the value the runtime will start from
                layer.mlgru.h.init = value
        self.next_reset = False

    def token(self, codes: np.ndarray) -> TokenReadback:
        """Run one token's embedding codes through every layer and read back what the host needs."""
        self._start()
        self.source.send(token_message(codes, self.next_reset))
        self.next_reset = False
        layout = self.spec.layout
        layer_sums = [np.zeros(layout.size, dtype=np.int64) for _ in self.layers]
        steps = self.steps_per_token
        for _ in range(self.steps_per_token):
            self.source.run(condition=RunSteps(num_steps=steps))
            final_row = None
            # Every Extractor got one message per step: take them all, so none is left to fill its
            # buffer (a full Extractor blocks the graph) or to be mistaken for the next token's.
            for _ in range(steps):
                for idx, layer in enumerate(self.layers):
                    layer_sums[idx] += layer.tap.receive().astype(np.int64)
                final = self.final_tap.receive()
                if final[-1] == 1:
                    final_row = final.astype(np.int64)
            if final_row is not None:
                groups = len(self.layers[0].groups)
                for idx, total in enumerate(layer_sums):
                    if total[-1] != groups:
                        raise RuntimeError(f"layer {idx}: {int(total[-1])} of {groups} group processes reported the token")
                return TokenReadback(layer_sums, final_row)
            steps = 1
        raise RuntimeError("the Lava graph did not deliver the token's output in time")
