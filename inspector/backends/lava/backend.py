"""The Lava backend: the host side of the integer model around a Lava process graph.

The layers run as a Lava process graph (`graph.py`) in a worker process (`worker.py`); this module
does what the host does in the emulator and on the chip: the embedding lookup, the LM head, and
the probe calls. `LavaLM` is callable like `IntegerLM` ((input_ids, state, probe) -> (logits,
state)), so generation, probes and every page work unchanged with backend = Lava simulation.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from contextlib import contextmanager
from typing import Callable, Hashable, Iterator, Optional

import torch

from inspector import schema as S
from inspector.backends.base import BackendBase, BackendRun, require_lava_memory
from inspector.backends.lava.activity import PortActivityProbe
from inspector.backends.lava.params import graph_spec, site_scale, synapse_weights
from inspector.backends.lava.worker import LavaBackendError, LavaWorker
from inspector.lm.generate import GeneratedToken, SamplingSettings
from inspector.quant import messaging
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
        elif self._state is None or len(state) != len(self._state) or any(
            not torch.equal(a, b) for a, b in zip(state, self._state, strict=True)
        ):
            if messaging.any_stateful(self.integer.qc):
                # the delta encoders' and Sigmas' state lives in the graph's processes, not in `state`
                raise LavaBackendError(
                    "with delta messaging the Lava graph continues only the sequence it ran last "
                    "(its encoders' state lives in the graph); start a new sequence"
                )
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
                probe.site(S.EMBEDDINGS, codes, integer.params.input_scale, clipped, S.ACTIVATION)
            readback = self.graph.token(codes.reshape(-1).numpy())
            layout = self.spec.layout
            hidden = layout.slot(S.HIDDEN)
            self._state = [
                torch.from_numpy(row[hidden.offset : hidden.offset + hidden.size]).reshape(1, -1) for row in readback.layers
            ]
            if probe is not None:
                self._replay(readback, probe)
            size = self.integer.config.hidden_size
            final = torch.from_numpy(readback.final[:size]).reshape(1, 1, -1)
            if probe is not None:
                final_clipped = torch.from_numpy(readback.final[size : 2 * size].astype(bool)).reshape(1, 1, -1)
                probe.site(S.FINAL_NORM, final, integer.params.final_norm.out_scale, final_clipped, S.ACTIVATION)
                if isinstance(probe, PortActivityProbe):
                    probe.port_activity(-1, S.FINAL_GROUP.name, (final[0, 0] != 0).numpy(), int(readback.final[2 * size]))
            step_logits = integer.host_logits(final)
            if probe is not None:
                probe.site(S.LOGITS, step_logits, 1.0, None, S.HOST)
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
                key = S.layer_key(idx, slot.site)
                probe.site(key, codes, site_scale(layer, slot.site), mask, slot.kind)
                if slot.site not in messaging.GROUP_OF_SITE:
                    continue
                sent = torch.from_numpy(row[layout.sent_slice(slot.site)]).reshape(1, 1, -1)  # 0 = no message
                if slot.site.endswith(S.SPIKES):  # what a group process sent into its Dense
                    name = S.projection_of(slot.site)
                    probe.synapses(S.layer_key(idx, name), sent, getattr(layer, name))
                elif hasattr(probe, "sent"):  # what a group process sent element-wise to the next
                    probe.sent(key, sent)
            if isinstance(probe, PortActivityProbe):
                for group, _ in layout.group_neurons:
                    probe.port_activity(idx, group, row[layout.messages_slice(group)], int(row[layout.rounds_index(group)]))


# on_wait(position): called while a run waits for the simulator; position 1 is next in line.
WaitFn = Callable[[int], None]
WAIT_POLL_S = 0.5


class SimulatorQueue:
    """First come, first served use of the one Lava graph a process runs at a time.

    Why: generating token by token on two graphs that close each other's worker made two users
    on Lava take 15x longer each (each token restarted a graph). A run now holds the simulator for
    its whole generation; others wait in order and are told their position.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._holder: object | None = None

    @contextmanager
    def hold(self, on_wait: Optional[WaitFn] = None) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._holder is None and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._holder = ticket
                        break
                    position = self._waiting.index(ticket) + 1
                if on_wait is not None:
                    on_wait(position)  # outside the lock: it may draw on a page, or be interrupted
                with self._cond:
                    if self._holder is not None or self._waiting[0] is not ticket:
                        self._cond.wait(WAIT_POLL_S)
        except BaseException:  # interrupted while waiting (a Stop click): leave the line
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            yield
        finally:
            with self._cond:
                self._holder = None
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._holder is not None


SIMULATOR = SimulatorQueue()


class LavaBackend(BackendBase):
    """The shared set-up (calibration, conversion, core map), with tokens computed by a Lava graph.

    Only one Lava graph runs at a time in a process: starting one closes the previous one (a
    graph is a worker plus one process per Lava process, so the app's cache of recent models and
    QuantConfigs must not keep one alive for each). A backend whose graph was closed this way
    starts it again when it is next used. Generations take turns through `SIMULATOR`: one holds
    the graph from its first token to its last, so graphs switch between runs, never per token.

    Users (app sessions) `attach` to a backend; when the last one `detach`es, the graph closes,
    so no Lava process outlives the sessions that used it.
    """

    name = "lava"
    target = "sim"  # see inspector.backends.lava.graph.run_config
    _lava: Optional[LavaLM] = None
    _live: "weakref.ReferenceType[LavaLM] | None" = None
    _live_lock = threading.Lock()
    _instances: "weakref.WeakSet[LavaBackend]" = weakref.WeakSet()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._users: set[Hashable] = set()
        self._users_lock = threading.Lock()
        LavaBackend._instances.add(self)

    def attach(self, user: Hashable) -> None:
        """`user` (an app session) uses this backend; see `detach`."""
        with self._users_lock:
            self._users.add(user)

    def detach(self, user: Hashable) -> None:
        """`user` no longer uses this backend; the graph closes when no user is left."""
        with self._users_lock:
            self._users.discard(user)
            unused = not self._users
        if unused:
            with SIMULATOR.hold():  # not in the middle of someone's generation
                self.close()

    @classmethod
    def detach_everywhere(cls, user: Hashable, keep: "LavaBackend | None" = None) -> None:
        """Detach `user` from every Lava backend but `keep` (a session switched model or backend)."""
        for backend in list(cls._instances):
            if backend is not keep and user in backend._users:
                backend.detach(user)

    @classmethod
    def live_graphs(cls) -> int:
        """Lava graphs running now (0 or 1)."""
        live = cls._live() if cls._live is not None else None
        return int(live is not None and not live.closed)

    def generate(
        self, prompt: str, sampling: SamplingSettings, probes: bool = True, record_tensors: bool = True,
        keep_from: int = 0, on_wait: Optional[WaitFn] = None,
    ) -> tuple[BackendRun, Iterator[GeneratedToken]]:
        """As `BackendBase.generate`, holding the simulator from the first token to the last (or until
        the stream is closed); `on_wait(position)` is called while waiting for it."""
        run, inner = super().generate(prompt, sampling, probes, record_tensors, keep_from)

        def tokens() -> Iterator[GeneratedToken]:
            with SIMULATOR.hold(on_wait):
                try:
                    yield from inner
                finally:
                    inner.close()

        return run, tokens()

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

    def new_probe(self, record_tensors: bool = True, keep_from: int = 0) -> PortActivityProbe:
        """A probe whose activity table counts what the graph's ports carried (see activity.py)."""
        return PortActivityProbe(self.core_map, record_tensors=record_tensors, keep_from=keep_from, qc=self.qc)

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

    Not run by us: no Loihi 2 system was available where this was written (see docs/lava.md).
    """

    name = "loihi2"
    target = "loihi2"
