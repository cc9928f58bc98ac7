"""The integer model as a Lava process graph, run token by token in `Loihi2SimCfg(select_tag="fixed_pt")`.

Graph (per layer; D hidden, M mixer, I GLU width; control elements end every message, see RESET
and VALID):

    Injector --x--> LayerCore 0 --x--> LayerCore 1 ... --x--> FinalNorm
    (host in)        |  ^    |              |                     |
               spikes|  |acc |readback      |readback             |readback
                     v  |    v              v                     v
                    Dense   Extractor      Extractor             Extractor   (host out)

    six Lava `Dense` processes per layer (i, f, g, o, gate, down): ternary synapses with graded
    spikes, weights sent as 2w with weight_exp = -1 (see synapses.py), one extra synapse for the flag

- Lava's own processes: `Dense` for every synapse (the model's only weights); `Injector` and
  `Extractor` (lava.proc.io) for the host's way in and out.
- Custom processes (fixed-point `PyLoihiProcessModel`s, because Lava has no process computing our
  integer norms, lookup-table gates and the MLGRU state update): `LayerCore` runs the neurons of
  one layer (the same layer program as the emulator, `IntegerLM.layer_program`, whose synapse
  requests it sends to its Dense processes and resumes when their accumulations come back);
  `FinalNorm` applies the final RMSNorm.
- Host side, as in the emulator and the paper: the embedding lookup and the LM head.

When a LayerCore finishes a token it sends a readback message: the codes and clipped masks of
every probed site, and its state h. `LavaGraph.token` collects these (a `TokenReadback`), and the
host side (`backend.py`) turns them into the same probe calls as the emulator's.

On Loihi 2 (`run_config("loihi2")`, untested: no system was available) Dense maps to the chip's
synapses; LayerCore and FinalNorm would run their Python models on the host CPU until someone
writes microcode neuron models for them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from inspector.lava_compat import install
from inspector.emulator.probes import split_site_key
from inspector.quant.integer_model import PROJECTION_NAMES, IntegerLM

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg, RunConfig  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel  # noqa: E402
from lava.proc.io.injector import Injector, PyLoihiInjectorModel  # noqa: E402
from lava.proc.io.utils import ChannelConfig, ReceiveEmpty  # noqa: E402

from inspector.lava.synapses import ternary_dense  # noqa: E402

SynapseWeights = list[dict[str, np.ndarray]]  # per layer, per projection: (out, in) int8 in {-1, 0, 1}


def synapse_weights(integer: IntegerLM) -> SynapseWeights:
    """The ternary weights of every projection, one byte each: what the Dense processes are built from."""
    return [
        {name: getattr(layer, name).matrix.values.numpy() for name in PROJECTION_NAMES}
        for layer in integer.params.layers
    ]


# Every message between processes ends in control elements. Synapse messages carry one, the valid
# flag (1 when the message holds data; a silent time step sends zeros). Token messages (x) carry two:
# [..., reset, valid], where reset = 1 starts a new sequence (every layer zeroes its state first).
RESET, VALID = -2, -1


def _with_flag(vector: np.ndarray, valid: bool) -> np.ndarray:
    return np.append(np.asarray(vector, dtype=np.int32), np.int32(1 if valid else 0))


def token_message(codes: np.ndarray, reset: bool) -> np.ndarray:
    """The message that carries one token's codes from a layer to the next (see RESET, VALID)."""
    return np.concatenate([np.asarray(codes, dtype=np.int32), np.array([int(reset), 1], dtype=np.int32)])


@dataclass(frozen=True)
class SiteSlot:
    key: str
    size: int
    scale: float
    kind: str
    offset: int


class _SiteRecorder:
    """Inside a LayerCore: keeps the codes and clipped masks each site produced for this token."""

    def __init__(self) -> None:
        self.codes: dict[str, np.ndarray] = {}
        self.clipped: dict[str, np.ndarray] = {}

    def site(self, key, codes, scale, clipped, kind) -> None:
        self.codes[key] = codes.reshape(-1).numpy()
        self.clipped[key] = (clipped.reshape(-1).numpy() if clipped is not None else np.zeros(codes.numel(), bool))

    def synapses(self, key, spikes, proj) -> None:  # the host recomputes synaptic ops from the spikes
        pass


def readback_size(layout: tuple[SiteSlot, ...], mixer: int) -> int:
    """LayerCore readback message: [codes of every site, their clipped masks, state h, valid]."""
    return 2 * sum(slot.size for slot in layout) + mixer + 1


class LayerCore(AbstractProcess):
    """The neurons of one layer. `integer` needs no synaptic weights (`IntegerLM.neurons_only`);
    `shapes` gives each projection's (out, in) for the ports to its Dense process."""

    def __init__(self, integer: IntegerLM, idx: int, layout: tuple[SiteSlot, ...], shapes: dict[str, tuple[int, int]], **kwargs):
        super().__init__(integer=integer, idx=idx, layout=layout, **kwargs)
        hidden, mixer = integer.config.hidden_size, integer.config.mixer_size
        self.x_in = InPort(shape=(hidden + 2,))
        self.x_out = OutPort(shape=(hidden + 2,))
        for name in PROJECTION_NAMES:
            out_features, in_features = shapes[name]
            setattr(self, f"s_{name}", OutPort(shape=(in_features + 1,)))
            setattr(self, f"acc_{name}", InPort(shape=(out_features + 1,)))
        self.readback = OutPort(shape=(readback_size(layout, mixer),))
        self.h = Var(shape=(mixer,), init=np.zeros(mixer, dtype=np.int32))


def _port_types() -> dict:
    int_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    int_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    types = {"x_in": int_in, "x_out": int_out, "readback": int_out}
    for name in PROJECTION_NAMES:
        types[f"s_{name}"] = int_out
        types[f"acc_{name}"] = int_in
    return types


@implements(proc=LayerCore, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLayerCoreModel(PyLoihiProcessModel):
    locals().update(_port_types())
    h: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.integer: IntegerLM = proc_params["integer"]
        self.idx: int = proc_params["idx"]
        self.layout: tuple[SiteSlot, ...] = proc_params["layout"]
        self.program = None
        self.reset = False
        self.waiting_for: Optional[str] = None
        self.recorder = _SiteRecorder()

    def _advance(self, value, outgoing: dict) -> Optional[np.ndarray]:
        """Resume the layer program; returns the layer output when it finishes."""
        try:
            request = next(self.program) if value is None else self.program.send(value)
        except StopIteration as done:
            out, h = done.value
            self.h[:] = h.reshape(-1).numpy().astype(np.int32)
            self.program, self.waiting_for = None, None
            return out.reshape(-1).numpy()
        name = request.key.rsplit(".", 1)[-1]
        outgoing[name] = request.spikes.reshape(-1).numpy()
        self.waiting_for = name
        return None

    def _readback(self) -> np.ndarray:
        codes = [self.recorder.codes[slot.key] for slot in self.layout]
        clipped = [self.recorder.clipped[slot.key] for slot in self.layout]
        return np.concatenate([*codes, *clipped, self.h, [1]]).astype(np.int32)

    def run_spk(self) -> None:
        x = self.x_in.recv()
        accumulated = {name: getattr(self, f"acc_{name}").recv() for name in PROJECTION_NAMES}
        outgoing: dict[str, np.ndarray] = {}
        result = None
        if self.program is None and x[VALID] == 1:
            self.reset = bool(x[RESET] == 1)
            if self.reset:
                self.h[:] = 0
            self.recorder = _SiteRecorder()
            codes = torch.from_numpy(x[:RESET].astype(np.int64)).reshape(1, 1, -1)
            state = torch.from_numpy(self.h.astype(np.int64)).reshape(1, -1)
            self.program = self.integer.layer_program(self.idx, codes, state, self.recorder)
            result = self._advance(None, outgoing)
        elif self.waiting_for is not None and accumulated[self.waiting_for][-1] == 1:
            acc = torch.from_numpy(accumulated[self.waiting_for][:-1].astype(np.int64)).reshape(1, 1, -1)
            result = self._advance(acc, outgoing)
        for name in PROJECTION_NAMES:
            port = getattr(self, f"s_{name}")
            port.send(_with_flag(outgoing[name], True) if name in outgoing else np.zeros(port.shape[0], np.int32))
        if result is None:
            self.x_out.send(np.zeros(self.x_out.shape[0], np.int32))
            self.readback.send(np.zeros(self.readback.shape[0], np.int32))
        else:
            self.x_out.send(token_message(result, self.reset))
            self.readback.send(self._readback())


class FinalNorm(AbstractProcess):
    """The final RMSNorm; sends [normed codes, clipped mask, valid] to the host."""

    def __init__(self, integer: IntegerLM, **kwargs):
        super().__init__(integer=integer, **kwargs)
        size = integer.config.hidden_size
        self.x_in = InPort(shape=(size + 2,))
        self.readback = OutPort(shape=(2 * size + 1,))


@implements(proc=FinalNorm, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFinalNormModel(PyLoihiProcessModel):
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    readback: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        x = self.x_in.recv()
        if x[VALID] != 1:
            self.readback.send(np.zeros(self.readback.shape[0], np.int32))
            return
        codes = torch.from_numpy(x[:RESET].astype(np.int64))
        out, clipped = self.proc_params["integer"].params.final_norm(codes)
        self.readback.send(np.concatenate([out.numpy(), clipped.numpy(), [1]]).astype(np.int32))


class _LayoutProbe:
    """Collects, per layer, the probed sites in the order the layer program reports them."""

    def __init__(self, layers: int) -> None:
        self.slots: list[list[SiteSlot]] = [[] for _ in range(layers)]

    def site(self, key, codes, scale, clipped, kind) -> None:
        layer, _ = split_site_key(key)
        if layer >= 0:
            slots = self.slots[layer]
            offset = sum(s.size for s in slots)
            slots.append(SiteSlot(key, int(codes[0, 0].numel()), float(scale), kind, offset))

    def synapses(self, key, spikes, proj) -> None:
        pass


def _flagged_dense(weight: np.ndarray) -> Dense:
    """Ternary synapses plus one synapse that carries the valid flag through (see synapses.py)."""
    out_features, in_features = weight.shape
    w = np.zeros((out_features + 1, in_features + 1), dtype=np.int32)
    w[:out_features, :in_features] = weight
    w[out_features, in_features] = 1
    return ternary_dense(w, message_bits=24)


@dataclass
class TokenReadback:
    """What the host reads back from the graph after one token (int arrays, one per layer)."""

    traces: list[np.ndarray]
    clipped: list[np.ndarray]
    final_out: np.ndarray
    final_clipped: np.ndarray
    states: list[np.ndarray]


def site_layouts(integer: IntegerLM) -> list[tuple[SiteSlot, ...]]:
    """Where each probed site of each layer sits in its LayerCore's readback (one dry run on the host)."""
    probe = _LayoutProbe(len(integer.params.layers))
    integer(torch.zeros(1, 1, dtype=torch.long), None, probe)
    return [tuple(slots) for slots in probe.slots]


TARGETS = ("sim", "loihi2")


def run_config(target: str) -> RunConfig:
    """How Lava runs the graph: "sim" is Lava's fixed-point simulator; "loihi2" is a Loihi 2 system.

    Injector and Extractor have one (untagged) Python model each, named here; they run on the host
    in both cases. On Loihi 2, `Loihi2HwCfg` picks lava-loihi's neuro-core model for `Dense` and,
    as it documents, falls back to the Python models of LayerCore and FinalNorm, which then run on
    the host CPU next to the chip (microcode models would move them onto the neuro-cores).
    """
    io_models = {Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel}
    if target == "sim":
        return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=io_models)
    if target == "loihi2":
        return Loihi2HwCfg(exception_proc_model_map=io_models)
    raise ValueError(f"no Lava target {target!r}; expected one of {TARGETS}")


class LavaGraph:
    """The layers of the integer model as a Lava process graph, fed one token's codes at a time.

    The host talks to the running graph through Lava's own `Injector` (token messages in) and
    `Extractor`s (one per LayerCore and one for FinalNorm: readback messages out). Both move whole
    vectors through a pipe; reading Vars instead costs one message per element, which made a
    token take seconds.
    """

    def __init__(self, integer: IntegerLM, weights: SynapseWeights, layouts: list[tuple[SiteSlot, ...]], target: str = "sim"):
        """`integer` may be `neurons_only()`: the synapses are built from `weights` (see synapse_weights)."""
        self.integer = integer
        self.layouts = layouts
        layers = len(integer.params.layers)
        hidden, mixer = integer.config.hidden_size, integer.config.mixer_size
        # A layer answers its six synapse requests one time step apart; the input and the final norm
        # add a step each. Fewer steps would only mean polling; more would waste simulator time.
        self.steps_per_token = len(PROJECTION_NAMES) * layers + 2
        buffer = self.steps_per_token + 1
        self.source = Injector(
            shape=(hidden + 2,), buffer_size=2,
            channel_config=ChannelConfig(receive_empty=ReceiveEmpty.NON_BLOCKING_ZEROS),
        )
        self.cores = [
            LayerCore(integer, idx, layouts[idx], {name: w.shape for name, w in weights[idx].items()})
            for idx in range(layers)
        ]
        self.final = FinalNorm(integer)
        upstream = self.source.out_port
        self.taps = []
        for idx, core in enumerate(self.cores):
            upstream.connect(core.x_in)
            for name in PROJECTION_NAMES:
                dense = _flagged_dense(weights[idx][name])
                getattr(core, f"s_{name}").connect(dense.s_in)
                dense.a_out.connect(getattr(core, f"acc_{name}"))
            tap = Extractor(shape=(readback_size(layouts[idx], mixer),), buffer_size=buffer)
            core.readback.connect(tap.in_port)
            self.taps.append(tap)
            upstream = core.x_out
        upstream.connect(self.final.x_in)
        self.final_tap = Extractor(shape=(2 * hidden + 1,), buffer_size=buffer)
        self.final.readback.connect(self.final_tap.in_port)
        self.run_cfg = run_config(target)
        self.started = False
        self.next_reset = True

    def close(self) -> None:
        if self.started:
            self.source.stop()
            self.started = False

    def _start(self) -> None:
        if not self.started:
            with warnings.catch_warnings():
                # Lava's model search re-imports this file under another name and warns that it
                # cannot; it finds the process models here anyway.
                warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
                self.source.create_runtime(run_cfg=self.run_cfg)
            self.started = True

    def reset_state(self) -> None:
        """Start a new sequence: the next token tells every layer to zero its state first."""
        self.next_reset = True

    def set_state(self, states: list[np.ndarray]) -> None:
        """Load the MLGRU states of every layer (continuing a sequence the host holds the state of)."""
        for core, h in zip(self.cores, states):
            value = np.asarray(h, dtype=np.int32).reshape(core.h.shape)
            if self.started:  # the runtime runs (token() starts it and runs it at once)
                core.h.set(value)
            else:  # not compiled yet: the value the runtime will start from
                core.h.init = value
        self.next_reset = False

    def token(self, codes: np.ndarray) -> TokenReadback:
        """Run one token's embedding codes through every layer and read back what the host needs."""
        self._start()
        self.source.send(token_message(codes, self.next_reset))
        self.next_reset = False
        layer_rows: list[Optional[np.ndarray]] = [None] * len(self.cores)
        steps = self.steps_per_token
        for _ in range(self.steps_per_token):
            self.source.run(condition=RunSteps(num_steps=steps))
            final_row = None
            # Every Extractor sent one message per step: take them all, so none is left to fill its
            # buffer (a full Extractor blocks the graph) or to be mistaken for the next token's.
            for _ in range(steps):
                for idx, tap in enumerate(self.taps):
                    row = tap.receive()
                    if row[-1] == 1:
                        layer_rows[idx] = row.astype(np.int64)
                final = self.final_tap.receive()
                if final[-1] == 1:
                    final_row = final.astype(np.int64)
            if final_row is not None:
                return self._readback(layer_rows, final_row)
            steps = 1
        raise RuntimeError("the Lava graph did not deliver the token's output in time")

    def _readback(self, layer_rows: list[Optional[np.ndarray]], final: np.ndarray) -> TokenReadback:
        traces, clipped, states = [], [], []
        for row, layout in zip(layer_rows, self.layouts):
            if row is None:
                raise RuntimeError("a LayerCore did not report its token")
            total = sum(slot.size for slot in layout)
            traces.append(row[:total])
            clipped.append(row[total : 2 * total].astype(bool))
            states.append(row[2 * total : -1])
        hidden = self.integer.config.hidden_size
        return TokenReadback(traces, clipped, final[:hidden], final[hidden : 2 * hidden].astype(bool), states)
