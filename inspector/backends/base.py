"""The backends that run the integer model: one interface, one registry, and which of them can run here.

- `emulator`: the vectorized bit-accurate emulator (`inspector.backends.emulator.Emulator`), always available.
- `lava`: Lava's fixed-point simulator (`Loihi2SimCfg(select_tag="fixed_pt")`) running the model as
  a Lava process graph (`inspector.backends.lava.backend.LavaBackend`).
- `loihi2`: Loihi 2 itself through `Loihi2HwCfg` (`inspector.backends.lava.backend.LoihiHardwareBackend`),
  which needs Intel's lava-loihi extension and a board (or the INRC cloud).

Every backend is a `BackendBase`: the one-time set-up they share (calibration, conversion to
the integer model, core map) and the ways to run it (`generate`, `step_fn`, `teacher_forced`).
They differ only in who computes a token's integers (`step_fn`) and what a probe counts from.

`REGISTRY` holds one `BackendEntry` per backend (key, label, implementing class, availability
check, what a run waits for); the CLI's `--backend` and the app's sidebar and run progress read it.

Import order (no cycles): this module imports neither the emulator engine nor Lava; the backends
import this module; `make_backend` imports the chosen implementation by name when it is asked for
(Lava's import is slow, and the emulator needs none of it). Each backend's availability is checked
once per process, so the UI and CLI can say what is missing before a run.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol

import torch

from inspector.chip.limits import HardwareConfig
from inspector.chip.mapper import CoreMap, map_model
from inspector.chip.probes import RecordingProbe
from inspector.errors import BackendUnavailableError
from inspector.lava_compat import lava_available
from inspector.lm.checkpoint import LoadedModel
from inspector.lm.generate import GeneratedToken, SamplingSettings, encode_prompt, generate
from inspector.lm.memory import available_bytes
from inspector.quant.calibrate import calibrate_for, default_calibration_text
from inspector.quant.config import QuantConfig
from inspector.quant.convert import convert
from inspector.quant.integer_model import IntegerLM, Probe
from inspector.schema import PROJECTIONS


@dataclass
class BackendRun:
    """A finished (or stopped) run on any backend: the prompt, generated tokens and what the probes
    recorded."""

    prompt: str
    prompt_ids: list[int]
    tokens: list[GeneratedToken] = field(default_factory=list)
    probe: Optional[RecordingProbe] = None

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + [t.token_id for t in self.tokens]


StepFn = Callable[..., tuple[torch.Tensor, list[torch.Tensor]]]  # (ids, state=None) -> (logits, state)


class Backend(Protocol):
    """What pages, the CLI and the analysis use of a backend."""

    name: str
    loaded: LoadedModel
    qc: QuantConfig
    hardware: HardwareConfig
    integer: IntegerLM
    core_map: CoreMap

    def new_probe(self, record_tensors: bool = True, keep_from: int = 0) -> RecordingProbe: ...

    def step_fn(self, probe: Optional[Probe]) -> StepFn: ...

    def generate(
        self, prompt: str, sampling: SamplingSettings, probes: bool = True, record_tensors: bool = True,
        keep_from: int = 0, on_wait: Optional[Callable[[int], None]] = None,
    ) -> tuple[BackendRun, Iterator[GeneratedToken]]: ...

    def teacher_forced(
        self, ids: list[int], record_tensors: bool = True, keep_from: int = 0,
    ) -> tuple[torch.Tensor, RecordingProbe]: ...

    def close(self) -> None: ...

    def attach(self, user) -> None: ...

    def detach(self, user) -> None: ...


class BackendBase:
    """The set-up every backend shares, and the runs built on `step_fn` (which subclasses define).

    Calibration, conversion and core mapping happen once, here, on the host; what a backend
    computes per token is its own (`step_fn`).
    """

    name = ""

    def __init__(
        self,
        loaded: LoadedModel,
        qc: QuantConfig | None = None,
        hardware: HardwareConfig | None = None,
        calibration_text: str | None = None,
        on_progress: Optional[Callable[[int, int], None]] = None,
    ):
        """Calibrate, convert and map. `on_progress(layers done, layers)` follows calibration, the
        one step that takes long on a large model (a float64 pass over the calibration text)."""
        self.loaded = loaded
        self.qc = qc or QuantConfig()
        self.hardware = hardware or HardwareConfig()
        text = calibration_text if calibration_text is not None else default_calibration_text()
        self.calibration_notes: list[str] = []  # cache files ignored on the way (said by the CLI and the app)
        self.calibration, self.calibration_cached = calibrate_for(
            loaded, self.qc, text, on_progress, note=self.calibration_notes.append,
        )
        self.params = convert(loaded.model, self.calibration, self.qc)
        self.integer = IntegerLM(self.params, loaded.model)
        weights = [{name: getattr(layer, name).matrix.values for name in PROJECTIONS} for layer in self.params.layers]
        self.core_map: CoreMap = map_model(loaded.config, self.hardware, weights)

    @property
    def calibration_status(self) -> str:
        """What the CLI prints and the app shows about where the calibration came from."""
        return "calibration loaded from cache" if self.calibration_cached else "calibration computed"

    def new_probe(self, record_tensors: bool = True, keep_from: int = 0) -> RecordingProbe:
        """A probe for this model; per-neuron data is kept from token `keep_from` on (see probes.py)."""
        return RecordingProbe(self.core_map, record_tensors=record_tensors, keep_from=keep_from, qc=self.qc)

    def step_fn(self, probe: Optional[Probe]) -> StepFn:
        """The integer model as a RecurrentLM callable computed by this backend, feeding `probe`."""
        raise NotImplementedError

    def generate(
        self, prompt: str, sampling: SamplingSettings, probes: bool = True, record_tensors: bool = True,
        keep_from: int = 0, on_wait: Optional[Callable[[int], None]] = None,
    ) -> tuple[BackendRun, Iterator[GeneratedToken]]:
        """A run object and the token stream that fills it (stop iterating, or close it, to stop the run).

        `keep_from`: the first token whose per-neuron data the probe keeps (0: all of them).
        `on_wait(position)`: called while the run waits for a shared simulator (Lava); the emulator never waits.
        """
        run = BackendRun(prompt, encode_prompt(self.loaded.tokenizer, prompt))
        run.probe = self.new_probe(record_tensors, keep_from) if probes else None
        stream = generate(
            self.step_fn(run.probe), self.loaded.tokenizer, prompt, **vars(sampling), eos_token_ids=self.loaded.eos_token_ids,
        )

        def tokens() -> Iterator[GeneratedToken]:
            for token in stream:
                run.tokens.append(token)
                yield token

        return run, tokens()

    @torch.no_grad()
    def teacher_forced(
        self, ids: list[int], record_tensors: bool = True, keep_from: int = 0,
    ) -> tuple[torch.Tensor, RecordingProbe]:
        """The integer model over a fixed token sequence: logits (T, vocab) and the probe.

        Computed by the emulator's arithmetic on every backend (all T tokens in one call; the
        backends compute the same integers, which tests/test_lava_backend.py checks).
        """
        probe = self.new_probe(record_tensors, keep_from)
        logits, _ = self.integer(torch.tensor([ids]), None, probe)
        return logits[0], probe

    def close(self) -> None:
        """Release backend resources (a process graph, a worker); the emulator holds none."""

    def attach(self, user) -> None:
        """A user (an app session) starts using this backend (only Lava backends keep count)."""

    def detach(self, user) -> None:
        """A user stops using this backend; a Lava backend closes its graph when none is left."""


LAVA_LOIHI_HELP = (
    "Intel's lava-loihi extension is not installed. It is not on PyPI: Intel distributes it to members of "
    "the Intel Neuromorphic Research Community (INRC, intel.com/neuromorphic), together with access to "
    "Loihi 2 systems (a local board or the INRC cloud through SLURM). Install it into .venv on such a host."
)

Availability = tuple[bool, str]  # (can run here, what it is when it can; what is missing when it cannot)


def _emulator_check() -> Availability:
    return True, "vectorized integer emulator of Loihi 2 neuro-cores"


def _lava_check() -> Availability:
    ok, why = lava_available()
    if not ok:
        return False, why
    return True, (
        "a Lava process graph in Loihi2SimCfg(select_tag='fixed_pt'), bit-exact with the emulator; "
        "10-40 s to start, then 1-2 tokens/s on a sample model"
    )


HOST_VARIABLES = ("SLURM", "LOIHI_GEN", "NXSDKHOST", "PARTITION", "BOARD")


def _hardware_check() -> Availability:
    """Whether Loihi2HwCfg can reach a Loihi 2 system from here; otherwise exactly what is missing."""
    if not lava_available()[0]:
        return False, "lava-nc is not importable, so Loihi2HwCfg cannot be used"
    try:
        from lava.utils.loihi import is_installed
    except Exception as exc:  # pragma: no cover - lava layout changed
        return False, f"cannot check for lava-loihi: {exc}"
    if not is_installed():
        return False, LAVA_LOIHI_HELP
    if not any(os.environ.get(var) for var in HOST_VARIABLES):
        return False, (
            "lava-loihi is installed but no Loihi 2 host is configured: none of "
            f"{', '.join(HOST_VARIABLES)} is set (set up SLURM or an Ethernet host as lava.utils.loihi describes)"
        )
    return True, (
        "the Lava process graph through Loihi2HwCfg: Dense synapses on the neuro-cores, the neuron-group processes "
        "as Python models on the host CPU (they have no microcode models yet); untested by us, no Loihi 2 system "
        "was available"
    )


@dataclass(frozen=True)
class BackendEntry:
    """Everything the CLI and the app say and do about one backend.

    `implementation` ("module:Class") is imported only when the backend is made, so naming every
    backend here costs no import of the emulator engine or Lava. `check` says whether it can run
    here (called once per process, see `status_of`). `waits_for` names the shared resource a run
    waits its turn for when another session is generating on it ("" when runs never wait), and
    `starting` what a first run is doing before its first token; `long_job`: its runs take a place
    in the server's job queue whatever the model's size.
    """

    key: str
    label: str
    implementation: str
    check: Callable[[], Availability]
    waits_for: str = ""
    starting: str = ""
    long_job: bool = False

    def wait_text(self, position: int) -> str:
        """What a run shows while it waits for this backend (position in its line of sessions)."""
        return (
            f"Waiting for {self.waits_for} (position {position}): another session is generating on it. It runs "
            "one generation at a time; the Emulator backend computes the same bits without waiting."
        )


REGISTRY: tuple[BackendEntry, ...] = (
    BackendEntry("emulator", "Emulator (bit-accurate)", "inspector.backends.emulator:Emulator", _emulator_check),
    BackendEntry(
        "lava", "Lava simulation", "inspector.backends.lava.backend:LavaBackend", _lava_check,
        waits_for="the Lava simulator",
        starting="starting the Lava runtime: a worker process, compiling the graph; about 10 s", long_job=True,
    ),
    BackendEntry(
        "loihi2", "Loihi 2 hardware", "inspector.backends.lava.backend:LoihiHardwareBackend", _hardware_check,
        waits_for="the Loihi 2 system", long_job=True,
    ),
)
BACKEND_KEYS = tuple(entry.key for entry in REGISTRY)


def entry_of(key: str) -> BackendEntry:
    for entry in REGISTRY:
        if entry.key == key:
            return entry
    raise ValueError(f"no backend {key!r}; expected one of {list(BACKEND_KEYS)}")


@dataclass(frozen=True)
class BackendStatus:
    """A backend as found here: its registry entry, whether it can run, and why (or why not)."""

    entry: BackendEntry
    available: bool
    reason: str

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def label(self) -> str:
        return self.entry.label


@functools.lru_cache(maxsize=None)
def status_of(key: str) -> BackendStatus:
    """Whether backend `key` can run here, checked once per process (only this backend's check runs:
    asking about the emulator imports no Lava)."""
    entry = entry_of(key)
    return BackendStatus(entry, *entry.check())


def backend_statuses() -> tuple[BackendStatus, ...]:
    """Every registered backend's status, in registry order."""
    return tuple(status_of(entry.key) for entry in REGISTRY)


# Memory of a Lava graph, measured: a 3.9 M-parameter sample model's graph (4 layers, 70 processes:
# one per neuron group) takes 1.03 GB (PSS). With the earlier graph of one process per layer, a
# random-weight MMfreeLM-370M graph (24 layers, about 200 processes) took about 10 GB and ran at
# 43 s per token; not re-measured with the per-group graph (390 processes). Estimated generously:
BYTES_PER_LAVA_PROCESS = 20 * 2**20  # a forked Python with torch and Lava loaded
BYTES_PER_WEIGHT = 24  # Dense weights as Lava holds them, plus the copies made while compiling


def lava_processes(layers: int) -> int:
    """Per layer nine neuron-group processes, six Dense and an Extractor; plus Injector, FinalNorm,
    its Extractor, Lava's runtime service and shared-memory manager, and our worker."""
    return 16 * layers + 6


def lava_memory_estimate(parameters: int, layers: int) -> int:
    """Bytes a Lava graph of this model needs, roughly (see the measurements above)."""
    return lava_processes(layers) * BYTES_PER_LAVA_PROCESS + parameters * BYTES_PER_WEIGHT


def require_lava_memory(parameters: int, layers: int) -> None:
    """Refuse, saying why, to start a Lava graph that would not fit in the memory available now
    (called when the graph is about to start, after any previous graph has been closed)."""
    need, free = lava_memory_estimate(parameters, layers), available_bytes()
    if need > free:
        raise BackendUnavailableError(
            f"the Lava graph of this model ({lava_processes(layers)} Lava processes and "
            f"{parameters / 1e6:.0f} M weights) would need about {need / 2**30:.1f} GB of memory and "
            f"{free / 2**30:.1f} GB is available. (A 370M model's graph took about 10 GB and 43 s per "
            "token.) The emulator computes the same bits."
        )


def require_backend(key: str) -> BackendStatus:
    """The backend's status if it can run here; otherwise an error that says what is missing."""
    status = status_of(key)
    if not status.available:
        raise BackendUnavailableError(f"backend {status.label!r} is unavailable: {status.reason}")
    return status


def backend_class(key: str) -> type[BackendBase]:
    module, name = entry_of(key).implementation.split(":")
    return getattr(importlib.import_module(module), name)


def make_backend(key: str, loaded: LoadedModel, qc: QuantConfig | None = None) -> BackendBase:
    """The emulator, the same model on Lava's fixed-point simulator (`key` = "lava"), or on a Loihi 2
    system through Lava (`key` = "loihi2", only where start-up detection finds lava-loihi and a host).

    All share calibration, conversion and core map; with Lava, generated tokens and every probed
    integer are computed by the Lava process graph, an implementation of the neuron arithmetic of
    its own (bit-exact with the emulator, tested). Teacher-forced runs (`teacher_forced`,
    comparisons on a given text) use the emulator's arithmetic on every backend.
    """
    cls = backend_class(key)  # unknown keys fail here, before any detection
    require_backend(key)
    return cls(loaded, qc)
