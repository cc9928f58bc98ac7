"""The emulator: a float checkpoint turned into the integer model, mapped onto cores, run with probes.

`Emulator` owns the one-time work (calibration, conversion, core mapping); `Emulator.generate`
streams tokens from the integer model exactly like `inspector.generate.generate` does for the
float model, and leaves everything the probes saw in the returned run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch

from inspector.checkpoint import LoadedModel
from inspector.emulator.hardware import HardwareConfig
from inspector.emulator.mapper import CoreMap, map_model
from inspector.emulator.probes import RecordingProbe
from inspector.generate import GeneratedToken, SamplingSettings, encode_prompt, generate
from inspector.quant.calibrate import calibrate, default_calibration_text
from inspector.quant.config import QuantConfig
from inspector.quant.convert import convert
from inspector.quant.integer_model import PROJECTION_NAMES, IntegerLM


@dataclass
class EmulatorRun:
    """A finished (or stopped) run: the prompt, generated tokens and what the probes recorded."""

    prompt: str
    prompt_ids: list[int]
    tokens: list[GeneratedToken] = field(default_factory=list)
    probe: Optional[RecordingProbe] = None

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + [t.token_id for t in self.tokens]


class Emulator:
    """The bit-accurate Loihi 2 emulator backend for one model and one QuantConfig."""

    name = "emulator"

    def __init__(
        self,
        loaded: LoadedModel,
        qc: QuantConfig | None = None,
        hardware: HardwareConfig | None = None,
        calibration_text: str | None = None,
    ):
        self.loaded = loaded
        self.qc = qc or QuantConfig()
        self.hardware = hardware or HardwareConfig()
        text = calibration_text if calibration_text is not None else default_calibration_text()
        self.calibration = calibrate(loaded.model, loaded.tokenizer, text, self.qc.calibration_tokens)
        self.params = convert(loaded.model, self.calibration, self.qc)
        self.integer = IntegerLM(self.params, loaded.model)
        weights = [{name: getattr(layer, name).weight for name in PROJECTION_NAMES} for layer in self.params.layers]
        self.core_map: CoreMap = map_model(loaded.config, self.hardware, weights)

    def new_probe(self, record_tensors: bool = True, keep_from: int = 0) -> RecordingProbe:
        """A probe for this model; per-neuron data is kept from token `keep_from` on (see probes.py)."""
        return RecordingProbe(self.core_map, record_tensors=record_tensors, keep_from=keep_from, qc=self.qc)

    def step_fn(self, probe: Optional[RecordingProbe]):
        """The integer model as a RecurrentLM callable, feeding `probe` on every call."""
        return lambda ids, state=None: self.integer(ids, state, probe)

    def generate(
        self, prompt: str, sampling: SamplingSettings, probes: bool = True, record_tensors: bool = True,
        keep_from: int = 0, on_wait: Optional[Callable[[int], None]] = None,
    ) -> tuple[EmulatorRun, Iterator[GeneratedToken]]:
        """A run object and the token stream that fills it (stop iterating, or close it, to stop the run).

        `keep_from`: the first token whose per-neuron data the probe keeps (0: all of them).
        `on_wait(position)`: called while the run waits for a shared simulator (Lava); the emulator never waits.
        """
        run = EmulatorRun(prompt, encode_prompt(self.loaded.tokenizer, prompt))
        run.probe = self.new_probe(record_tensors, keep_from) if probes else None
        stream = generate(self.step_fn(run.probe), self.loaded.tokenizer, prompt, **vars(sampling))

        def tokens() -> Iterator[GeneratedToken]:
            for token in stream:
                run.tokens.append(token)
                yield token

        return run, tokens()

    def close(self) -> None:
        """Release backend resources (the emulator holds none)."""

    def attach(self, user) -> None:
        """A user (an app session) starts using this backend (only Lava backends keep count)."""

    def detach(self, user) -> None:
        """A user stops using this backend; a Lava backend closes its graph when none is left."""

    @torch.no_grad()
    def teacher_forced(self, ids: list[int], record_tensors: bool = True, keep_from: int = 0) -> tuple[torch.Tensor, RecordingProbe]:
        """Run the integer model over a fixed token sequence; logits (T, vocab) and the probe."""
        probe = self.new_probe(record_tensors, keep_from)
        logits, _ = self.integer(torch.tensor([ids]), None, probe)
        return logits[0], probe


def make_backend(key: str, loaded: LoadedModel, qc: QuantConfig | None = None) -> Emulator:
    """The emulator, the same model on Lava's fixed-point simulator (`key` = "lava"), or on a Loihi 2
    system through Lava (`key` = "loihi2", only where `inspector.backends` finds lava-loihi and a host).

    All share calibration, conversion and core map; with Lava, generated tokens and every probed
    integer are computed by the Lava process graph (bit-exact with the emulator, tested). Teacher-
    forced runs (`teacher_forced`, comparisons on a given text) use the emulator, which computes
    the same integers.
    """
    if key == "emulator":
        return Emulator(loaded, qc)
    if key in ("lava", "loihi2"):
        from inspector.backends import require_backend

        require_backend(key)
        from inspector.lava.backend import LavaBackend, LoihiHardwareBackend  # imports Lava: only when asked for

        return (LavaBackend if key == "lava" else LoihiHardwareBackend)(loaded, qc)
    raise ValueError(f"no backend {key!r}")
