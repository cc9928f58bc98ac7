"""The integer model's bits do not depend on the number of threads (nor, by construction, the machine).

Calibration runs in float64 and rounds each maximum to float32; ternary scales are summed in float64
(see inspector/quant/calibrate.py and inspector.lm.ternary.ternarize). This test calibrates and converts a
sample model with 1 and with 2 threads and compares every scale, multiplier, table and code.
"""

from __future__ import annotations

import dataclasses

import torch

from inspector.backends.emulator import Emulator
from inspector.lm.catalog import sample_models
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings


def _flatten(value, prefix="params"):
    """Every leaf of the IntegerParams tree as (path, value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _flatten(getattr(value, field.name), f"{prefix}.{field.name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _flatten(value[key], f"{prefix}[{key!r}]")
    else:
        yield prefix, value


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _setup(loaded, threads: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        emulator = Emulator(loaded)
        run, stream = emulator.generate("Once upon a time", SamplingSettings(max_new_tokens=12, temperature=0.0), probes=True)
        list(stream)
        return emulator, run
    finally:
        torch.set_num_threads(previous)


def test_calibration_conversion_and_codes_are_thread_independent():
    loaded = load_checkpoint(sample_models()["tinystories"])
    one, run_one = _setup(loaded, 1)
    two, run_two = _setup(loaded, 2)
    assert one.calibration == two.calibration
    leaves_one, leaves_two = dict(_flatten(one.params)), dict(_flatten(two.params))
    assert leaves_one.keys() == leaves_two.keys()
    different = [path for path in leaves_one if not _equal(leaves_one[path], leaves_two[path])]
    assert not different, different[:5]
    assert run_one.all_ids == run_two.all_ids
    states_one, states_two = run_one.probe.states(), run_two.probe.states()
    assert states_one.equals(states_two)
