"""The emulator backend: the integer model computed by the vectorized integer kernels on the host.

The set-up (calibration, conversion, core map) and the runs (`generate`, `teacher_forced`) are the
ones every backend shares (`inspector.backends.base.BackendBase`); the emulator computes each token
with `IntegerLM` itself, every ternary accumulation an exact int8 GEMM (inspector.lm.ternary).
"""

from __future__ import annotations

from typing import Optional

from inspector.backends.base import BackendBase, StepFn
from inspector.quant.integer_model import Probe


class Emulator(BackendBase):
    """The bit-accurate Loihi 2 emulator backend for one model and one QuantConfig."""

    name = "emulator"

    def step_fn(self, probe: Optional[Probe]) -> StepFn:
        """The integer model as a RecurrentLM callable, feeding `probe` on every call."""
        return lambda ids, state=None: self.integer(ids, state, probe)
