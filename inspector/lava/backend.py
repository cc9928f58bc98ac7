"""The integer model as a Lava process graph, run token by token in `Loihi2SimCfg(select_tag="fixed_pt")`.

Graph (per layer; D hidden, M mixer, I GLU width; every vector carries one extra trailing element,
the valid flag, 1 when the message holds data):

    HostInput --x--> LayerCore 0 --x--> LayerCore 1 ... --x--> FinalNorm
                      |  ^ |  ^ ...
                 spikes|  |acc      six Lava `Dense` processes per layer (i, f, g, o, gate, down):
                      v  |          ternary synapses with graded spikes, weights sent as 2w with
                     Dense          weight_exp = -1 (see synapses.py), one extra synapse for the flag

- Lava's own processes: `Dense` for every synapse (the model's only weights).
- Custom processes (fixed-point `PyLoihiProcessModel`s, because Lava has no process computing our
  integer norms, lookup-table gates and the MLGRU state update): `LayerCore` runs the neurons of
  one layer (the same layer program as the emulator, `IntegerLM.layer_program`, whose synapse
  requests it sends to its Dense processes and resumes when their accumulations come back),
  `HostInput` injects the embedding codes of a token, `FinalNorm` applies the final RMSNorm.
- Host side, as in the emulator and the paper: the embedding lookup and the LM head.

Each LayerCore keeps the state h and the codes of every probed site of the last token in Vars, so
the host reads them back after each token and feeds the same probes as the emulator.

On Loihi 2 hardware the LayerCore, HostInput and FinalNorm programs would need microcode neuron
models (Python process models only run in simulation); Dense maps to the chip's synapses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from inspector.emulator.engine import Emulator
from inspector.lava_compat import install
from inspector.quant.integer_model import IntegerLM, Probe

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
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402

from inspector.lava.synapses import ternary_dense  # noqa: E402

PROJECTIONS = ("i_proj", "f_proj", "g_proj", "o_proj", "gate_proj", "down_proj")


def _with_flag(vector: np.ndarray, valid: bool) -> np.ndarray:
    return np.append(np.asarray(vector, dtype=np.int32), np.int32(1 if valid else 0))


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


class LayerCore(AbstractProcess):
    def __init__(self, integer: IntegerLM, idx: int, layout: tuple[SiteSlot, ...], **kwargs):
        super().__init__(integer=integer, idx=idx, layout=layout, **kwargs)
        layer = integer.params.layers[idx]
        hidden, mixer = integer.config.hidden_size, integer.config.mixer_size
        self.x_in = InPort(shape=(hidden + 1,))
        self.x_out = OutPort(shape=(hidden + 1,))
        for name in PROJECTIONS:
            out_features, in_features = getattr(layer, name).weight.shape
            setattr(self, f"s_{name}", OutPort(shape=(in_features + 1,)))
            setattr(self, f"acc_{name}", InPort(shape=(out_features + 1,)))
        total = sum(slot.size for slot in layout)
        self.trace = Var(shape=(total,), init=np.zeros(total, dtype=np.int32))
        self.clipped = Var(shape=(total,), init=np.zeros(total, dtype=np.int32))
        self.h = Var(shape=(mixer,), init=np.zeros(mixer, dtype=np.int32))


def _port_types() -> dict:
    types = {"x_in": LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24), "x_out": LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)}
    for name in PROJECTIONS:
        types[f"s_{name}"] = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
        types[f"acc_{name}"] = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    return types


@implements(proc=LayerCore, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLayerCoreModel(PyLoihiProcessModel):
    locals().update(_port_types())
    trace: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    clipped: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    h: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.integer: IntegerLM = proc_params["integer"]
        self.idx: int = proc_params["idx"]
        self.layout: tuple[SiteSlot, ...] = proc_params["layout"]
        self.program = None
        self.waiting_for: Optional[str] = None
        self.recorder = _SiteRecorder()

    def _advance(self, value, outgoing: dict) -> Optional[np.ndarray]:
        """Resume the layer program; returns the layer output when it finishes."""
        try:
            request = next(self.program) if value is None else self.program.send(value)
        except StopIteration as done:
            out, h = done.value
            self.h[:] = h.reshape(-1).numpy().astype(np.int32)
            for slot in self.layout:
                self.trace[slot.offset : slot.offset + slot.size] = self.recorder.codes[slot.key]
                self.clipped[slot.offset : slot.offset + slot.size] = self.recorder.clipped[slot.key]
            self.program, self.waiting_for = None, None
            return out.reshape(-1).numpy()
        name = request.key.rsplit(".", 1)[-1]
        outgoing[name] = request.spikes.reshape(-1).numpy()
        self.waiting_for = name
        return None

    def run_spk(self) -> None:
        x = self.x_in.recv()
        accumulated = {name: getattr(self, f"acc_{name}").recv() for name in PROJECTIONS}
        outgoing: dict[str, np.ndarray] = {}
        result = None
        if self.program is None and x[-1] == 1:
            self.recorder = _SiteRecorder()
            codes = torch.from_numpy(x[:-1].astype(np.int64)).reshape(1, 1, -1)
            state = torch.from_numpy(self.h.astype(np.int64)).reshape(1, -1)
            self.program = self.integer.layer_program(self.idx, codes, state, self.recorder)
            result = self._advance(None, outgoing)
        elif self.waiting_for is not None and accumulated[self.waiting_for][-1] == 1:
            acc = torch.from_numpy(accumulated[self.waiting_for][:-1].astype(np.int64)).reshape(1, 1, -1)
            result = self._advance(acc, outgoing)
        for name in PROJECTIONS:
            port = getattr(self, f"s_{name}")
            size = port.shape[0] - 1
            port.send(_with_flag(outgoing[name], True) if name in outgoing else np.zeros(size + 1, np.int32))
        self.x_out.send(_with_flag(result, True) if result is not None else np.zeros(self.x_out.shape[0], np.int32))


class HostInput(AbstractProcess):
    """Sends one token's embedding codes (with the valid flag) when armed by the host."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.x_out = OutPort(shape=(size + 1,))
        self.data = Var(shape=(size + 1,), init=np.zeros(size + 1, dtype=np.int32))
        self.armed = Var(shape=(1,), init=np.zeros(1, dtype=np.int32))


@implements(proc=HostInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostInputModel(PyLoihiProcessModel):
    x_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    armed: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def run_spk(self) -> None:
        if self.armed[0] == 1:
            self.armed[0] = 0
            self.x_out.send(self.data.copy())
        else:
            self.x_out.send(np.zeros_like(self.data))


class FinalNorm(AbstractProcess):
    def __init__(self, integer: IntegerLM, **kwargs):
        super().__init__(integer=integer, **kwargs)
        size = integer.config.hidden_size
        self.x_in = InPort(shape=(size + 1,))
        self.out = Var(shape=(size,), init=np.zeros(size, dtype=np.int32))
        self.clipped = Var(shape=(size,), init=np.zeros(size, dtype=np.int32))
        self.done = Var(shape=(1,), init=np.zeros(1, dtype=np.int32))


@implements(proc=FinalNorm, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFinalNormModel(PyLoihiProcessModel):
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    clipped: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    done: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def run_spk(self) -> None:
        x = self.x_in.recv()
        if x[-1] == 1:
            codes = torch.from_numpy(x[:-1].astype(np.int64))
            out, clipped = self.proc_params["integer"].params.final_norm(codes)
            self.out[:] = out.numpy().astype(np.int32)
            self.clipped[:] = clipped.numpy().astype(np.int32)
            self.done[0] = 1


class _LayoutProbe:
    def __init__(self, idx: int) -> None:
        self.prefix = f"layers.{idx}."
        self.slots: list[SiteSlot] = []

    def site(self, key, codes, scale, clipped, kind) -> None:
        if key.startswith(self.prefix):
            offset = sum(s.size for s in self.slots)
            self.slots.append(SiteSlot(key, int(codes[0, 0].numel()), float(scale), kind, offset))

    def synapses(self, key, spikes, proj) -> None:
        pass


def _flagged_dense(weight: torch.Tensor) -> Dense:
    """Ternary synapses plus one synapse that carries the valid flag through (see synapses.py)."""
    out_features, in_features = weight.shape
    w = np.zeros((out_features + 1, in_features + 1), dtype=np.int32)
    w[:out_features, :in_features] = weight.numpy()
    w[out_features, in_features] = 1
    return ternary_dense(w, message_bits=24)


class LavaLM:
    """The integer model on Lava, callable like `IntegerLM`: (input_ids, state, probe) -> (logits, state)."""

    def __init__(self, integer: IntegerLM):
        self.integer = integer
        layers = len(integer.params.layers)
        layouts = []
        for idx in range(layers):
            probe = _LayoutProbe(idx)
            integer(torch.zeros(1, 1, dtype=torch.long), None, probe)
            layouts.append(tuple(probe.slots))
        self.layouts = layouts
        self.source = HostInput(integer.config.hidden_size)
        self.cores = [LayerCore(integer, idx, layouts[idx]) for idx in range(layers)]
        self.final = FinalNorm(integer)
        upstream = self.source.x_out
        for idx, core in enumerate(self.cores):
            upstream.connect(core.x_in)
            for name in PROJECTIONS:
                dense = _flagged_dense(getattr(integer.params.layers[idx], name).weight)
                getattr(core, f"s_{name}").connect(dense.s_in)
                dense.a_out.connect(getattr(core, f"acc_{name}"))
            upstream = core.x_out
        upstream.connect(self.final.x_in)
        self.run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
        self.started = False
        # A layer answers its six synapse requests one time step apart; the input and the final norm
        # add a step each. Fewer steps would only mean polling; more would waste simulator time.
        self.steps_per_token = len(PROJECTIONS) * layers + 2

    def close(self) -> None:
        if self.started:
            self.source.stop()
            self.started = False

    def __enter__(self) -> "LavaLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, steps: int) -> None:
        with warnings.catch_warnings():
            # Lava's model search re-imports this file under another name and warns that it cannot;
            # it finds the process models here anyway.
            warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
            self.source.run(condition=RunSteps(num_steps=steps), run_cfg=self.run_cfg)
        self.started = True

    def _token(self, codes: np.ndarray) -> None:
        if self.started:
            self.final.done.set(np.zeros(1, dtype=np.int32))
            self.source.data.set(_with_flag(codes, True))
            self.source.armed.set(np.ones(1, dtype=np.int32))
        else:
            self.source.data.init = _with_flag(codes, True)
            self.source.armed.init = np.ones(1, dtype=np.int32)
        self._run(self.steps_per_token)
        for _ in range(self.steps_per_token):
            if int(self.final.done.get()[0]) == 1:
                return
            self._run(1)
        raise RuntimeError("the Lava graph did not deliver the token's output in time")

    def reset_state(self) -> None:
        if self.started:
            for core in self.cores:
                core.h.set(np.zeros(core.h.shape, dtype=np.int32))

    def state(self) -> list[torch.Tensor]:
        if not self.started:
            return self.integer.init_state(1)
        return [torch.from_numpy(core.h.get().astype(np.int64)).reshape(1, -1) for core in self.cores]

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, state: Optional[list[torch.Tensor]] = None, probe: Optional[Probe] = None):
        if input_ids.shape[0] != 1:
            raise ValueError("the Lava backend runs batch size 1")
        if state is None:
            self.reset_state()
        integer = self.integer
        logits = []
        for t in range(input_ids.shape[1]):
            codes, clipped = integer.embed(input_ids[:, t : t + 1])
            if probe is not None:
                probe.site("embeddings", codes, integer.params.input_scale, clipped, "activation")
            self._token(codes.reshape(-1).numpy())
            if probe is not None:
                self._replay(probe)
            final = torch.from_numpy(self.final.out.get().astype(np.int64)).reshape(1, 1, -1)
            scale = integer.params.final_norm.out_scale
            if probe is not None:
                final_clipped = torch.from_numpy(self.final.clipped.get().astype(bool)).reshape(1, 1, -1)
                probe.site("final_norm", final, scale, final_clipped, "activation")
            step_logits = integer.lm_head(final.float() * scale)
            if probe is not None:
                probe.site("logits", step_logits, 1.0, None, "host")
            logits.append(step_logits)
        return torch.cat(logits, dim=1), self.state()

    def _replay(self, probe: Probe) -> None:
        """Feed the probe what each LayerCore recorded, in the emulator's call order."""
        for idx, core in enumerate(self.cores):
            trace = core.trace.get().astype(np.int64)
            clipped = core.clipped.get().astype(bool)
            layer = self.integer.params.layers[idx]
            for slot in self.layouts[idx]:
                codes = torch.from_numpy(trace[slot.offset : slot.offset + slot.size]).reshape(1, 1, -1)
                mask = torch.from_numpy(clipped[slot.offset : slot.offset + slot.size]).reshape(1, 1, -1)
                probe.site(slot.key, codes, slot.scale, mask, slot.kind)
                if slot.key.endswith(".spikes"):
                    name = slot.key[: -len(".spikes")]
                    probe.synapses(name, codes, getattr(layer, name.rsplit(".", 1)[-1]))


class LavaBackend(Emulator):
    """The emulator's set-up (calibration, conversion, core map), with tokens computed on Lava."""

    name = "lava"
    _lava: Optional[LavaLM] = None

    def lava(self) -> LavaLM:
        if self._lava is None:
            self._lava = LavaLM(self.integer)
        return self._lava

    def step_fn(self, probe):
        lava = self.lava()
        return lambda ids, state=None: lava(ids, state, probe)

    def close(self) -> None:
        if self._lava is not None:
            self._lava.close()
            self._lava = None
