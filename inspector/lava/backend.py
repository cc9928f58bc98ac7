"""The Lava backend: the host side of the integer model around a Lava process graph.

The layers run as a Lava process graph (`graph.py`) in a worker process (`worker.py`); this module
does what the host does in the emulator and on the chip: the embedding lookup, the LM head, and
the probe calls. `LavaLM` is callable like `IntegerLM` ((input_ids, state, probe) -> (logits,
state)), so generation, probes and every page work unchanged with backend = Lava simulation.
"""

from __future__ import annotations

import threading
import weakref
from typing import Optional

import torch

from inspector.backends import IntegerBackend, require_lava_memory
from inspector.lava.activity import PortActivityProbe
from inspector.lava.params import graph_spec, site_scale, synapse_weights
from inspector.lava.worker import LavaBackendError, LavaWorker
from inspector.quant.integer_model import IntegerLM, Probe


class GraphClosedError(LavaBackendError):
    """The graph was closed because another backend started one (one runs at a time)."""


class LavaLM:
    """The integer model with its layers computed by Lava (callable like `IntegerLM`)."""

    def __init__(self, integer: IntegerLM, target: str = "sim"):
        self.integer = integer
        self.spec = graph_spec(integer.params)
        # The worker gets only what the graph needs: the neurons' data, the weights as int8.
        self.graph = LavaWorker(self.spec, synapse_weights(integer.params), target)
        self._state: Optional[list[torch.Tensor]] = None  # what the graph holds after the last token
        # One graph, one sequence at a time: two app sessions sharing a cached backend take turns,
        # and each call loads its own state first (see _load_state).
        self._lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.graph.close()

    def __enter__(self) -> "LavaLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load_state(self, state: Optional[list[torch.Tensor]]) -> None:
        if state is None:
            self.graph.reset_state()
        elif self._state is None or any(not torch.equal(a, b) for a, b in zip(state, self._state)):
            self.graph.set_state([h.reshape(-1).numpy() for h in state])

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, state: Optional[list[torch.Tensor]] = None, probe: Optional[Probe] = None):
        if input_ids.shape[0] != 1:
            raise ValueError("the Lava backend runs batch size 1")
        with self._lock:
            if self.closed:
                raise GraphClosedError("this Lava graph was closed (another one started); run again")
            return self._forward(input_ids, state, probe)

    def _forward(self, input_ids: torch.Tensor, state: Optional[list[torch.Tensor]], probe: Optional[Probe]):
        self._load_state(state)
        integer = self.integer
        logits = []
        for t in range(input_ids.shape[1]):
            codes, clipped = integer.embed(input_ids[:, t : t + 1])
            if probe is not None:
                probe.site("embeddings", codes, integer.params.input_scale, clipped, "activation")
            readback = self.graph.token(codes.reshape(-1).numpy())
            layout = self.spec.layout
            hidden = layout.slot("hidden")
            self._state = [torch.from_numpy(row[hidden.offset : hidden.offset + hidden.size]).reshape(1, -1) for row in readback.layers]
            if probe is not None:
                self._replay(readback, probe)
            size = self.integer.config.hidden_size
            final = torch.from_numpy(readback.final[:size]).reshape(1, 1, -1)
            if probe is not None:
                final_clipped = torch.from_numpy(readback.final[size : 2 * size].astype(bool)).reshape(1, 1, -1)
                probe.site("final_norm", final, integer.params.final_norm.out_scale, final_clipped, "activation")
                if isinstance(probe, PortActivityProbe):
                    probe.port_activity(-1, "final_norm", (final[0, 0] != 0).numpy(), int(readback.final[2 * size]))
            step_logits = integer.host_logits(final)
            if probe is not None:
                probe.site("logits", step_logits, 1.0, None, "host")
            logits.append(step_logits)
        return torch.cat(logits, dim=1), [h.clone() for h in self._state]

    def _replay(self, readback, probe: Probe) -> None:
        """Feed the probe what each layer's group processes reported, in the emulator's call order."""
        layout = self.spec.layout
        for idx, row in enumerate(readback.layers):
            layer = self.integer.params.layers[idx]
            for slot in layout.slots:
                span = slice(slot.offset, slot.offset + slot.size)
                clip_span = slice(layout.codes_size + slot.offset, layout.codes_size + slot.offset + slot.size)
                codes = torch.from_numpy(row[span]).reshape(1, 1, -1)
                mask = torch.from_numpy(row[clip_span].astype(bool)).reshape(1, 1, -1)
                key = f"layers.{idx}.{slot.site}"
                probe.site(key, codes, site_scale(layer, slot.site), mask, slot.kind)
                if slot.site.endswith(".spikes"):  # the spikes a group process sent into its Dense
                    name = slot.site[: -len(".spikes")]
                    probe.synapses(f"layers.{idx}.{name}", codes, getattr(layer, name))
            if isinstance(probe, PortActivityProbe):
                for group, _ in layout.group_neurons:
                    probe.port_activity(idx, group, row[layout.messages_slice(group)], int(row[layout.rounds_index(group)]))


class LavaBackend(IntegerBackend):
    """The shared set-up (calibration, conversion, core map), with tokens computed by a Lava graph.

    Only one Lava graph runs at a time in a process: starting one closes the previous one (a
    graph is a worker plus one process per Lava process, so the app's cache of recent models and
    QuantConfigs must not keep one alive for each). A backend whose graph was closed this way
    starts it again when it is next used.
    """

    name = "lava"
    target = "sim"  # see inspector.lava.graph.run_config
    _lava: Optional[LavaLM] = None
    _live: "weakref.ReferenceType[LavaLM] | None" = None
    _live_lock = threading.Lock()

    def lava(self) -> LavaLM:
        if self._lava is None or self._lava.closed:
            with LavaBackend._live_lock:
                if self._lava is not None and not self._lava.closed:  # another thread started it
                    return self._lava
                previous = LavaBackend._live() if LavaBackend._live is not None else None
                if previous is not None and not previous.closed:
                    with previous._lock:  # let a token in flight finish
                        previous.close()
                # Checked now, with the previous graph's memory freed (the check reads MemAvailable).
                require_lava_memory(self.loaded.model.num_parameters(), self.loaded.config.num_hidden_layers)
                self._lava = LavaLM(self.integer, self.target)
                LavaBackend._live = weakref.ref(self._lava)
        return self._lava

    def new_probe(self, record_tensors: bool = True) -> PortActivityProbe:
        """A probe whose activity table counts what the graph's ports carried (see activity.py)."""
        return PortActivityProbe(self.core_map, record_tensors=record_tensors)

    def step_fn(self, probe):
        def step(ids, state=None):
            # self.lava() on every call: a graph closed for another backend restarts and reloads
            # the state; once more if it was closed between fetching it and calling it.
            try:
                return self.lava()(ids, state, probe)
            except GraphClosedError:
                return self.lava()(ids, state, probe)

        return step

    def close(self) -> None:
        if self._lava is not None:
            self._lava.close()
            self._lava = None


class LoihiHardwareBackend(LavaBackend):
    """The same graph on a Loihi 2 system through `Loihi2HwCfg` (needs Intel's lava-loihi and a board).

    Not run by us: no Loihi 2 system was available where this was written (see the README).
    """

    name = "loihi2"
    target = "loihi2"
