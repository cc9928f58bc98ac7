"""The float model and the integer model read side by side, as llama2.c's run.c and runq.c do.

`inspector/lm/model.py` and `inspector/quant/integer_model.py` define the same steps in the same
order; each step records the same sites at the same points, every recording line says its shape,
and they differ only where quantization enters (the sites listed in INTEGER_ONLY).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from inspector import schema as S
from inspector.backends.emulator import Emulator
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.tokenizer import encode
from tests.conftest import TINY_TEXT

REPO = Path(__file__).resolve().parents[1]
FLOAT_FILE = REPO / "inspector" / "lm" / "model.py"
INTEGER_FILE = REPO / "inspector" / "quant" / "integer_model.py"

# Each step: (class of the float model, its method) and the IntegerLM method that is its integer form,
# in the order both files define them.
TWINS = [
    (("BitLinear", "forward"), "bitlinear"),
    (("MLGRU", "forward"), "mlgru"),
    (("MLGRU", "recurrence"), "recurrence"),
    (("GLU", "forward"), "glu"),
    (("Block", "forward"), "block"),
    (("HGRNBitForCausalLM", "forward"), "__call__"),
]
# Sites only the integer model records: a BitLinear core's spikes and accumulator, the normed gate and the
# state's readout as codes of their own.
INTEGER_ONLY = {"name + S.SPIKES", "name + S.ACCUMULATOR_SUFFIX", S.G_NORM, S.HIDDEN_CODE}


def _methods(path: Path) -> dict[tuple[str, str], ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        (cls.name, fn.name): fn
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for fn in cls.body
        if isinstance(fn, ast.FunctionDef)
    }


def _site_calls(fn: ast.FunctionDef) -> list[ast.Call]:
    """`site(...)` and `site.record(...)` calls, in source order."""
    calls = [
        node for node in ast.walk(fn)
        if isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id == "site")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "site")
        )
    ]
    return sorted(calls, key=lambda call: (call.lineno, call.col_offset))


def _site_name(call: ast.Call) -> str:
    """The recorded site: a schema constant's value, or the expression naming it."""
    first = call.args[0]
    if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "S":
        return getattr(S, first.attr)
    return ast.unparse(first)


FLOAT, INTEGER = _methods(FLOAT_FILE), _methods(INTEGER_FILE)


def test_both_files_define_the_same_steps_in_the_same_order():
    float_lines = [FLOAT[twin].lineno for twin, _ in TWINS]
    integer_lines = [INTEGER[("IntegerLM", name)].lineno for _, name in TWINS]
    assert float_lines == sorted(float_lines)
    assert integer_lines == sorted(integer_lines)


@pytest.mark.parametrize(("float_step", "integer_step"), TWINS, ids=[name for _, name in TWINS])
def test_each_step_records_the_same_sites_at_the_same_points(float_step, integer_step):
    float_sites = [_site_name(call) for call in _site_calls(FLOAT[float_step])]
    integer_sites = [_site_name(call) for call in _site_calls(INTEGER[("IntegerLM", integer_step)])]
    assert float_sites == [name for name in integer_sites if name not in INTEGER_ONLY]


@pytest.mark.parametrize(("path", "methods"), [(FLOAT_FILE, FLOAT), (INTEGER_FILE, INTEGER)], ids=["float", "integer"])
def test_every_line_that_records_a_site_says_its_shape(path, methods):
    lines = path.read_text(encoding="utf-8").splitlines()
    steps = [twin for twin, _ in TWINS] if methods is FLOAT else [("IntegerLM", name) for _, name in TWINS]
    missing = [
        f"{path.name}:{call.lineno}: {lines[call.lineno - 1].strip()}"
        for step in steps
        for call in _site_calls(methods[step])
        if "# (" not in lines[call.lineno - 1]
    ]
    assert not missing, "\n".join(missing)


class _SiteOrder:
    """A probe that only notes which sites the integer model reports, in order."""

    def __init__(self):
        self.keys: list[str] = []

    def site(self, key, codes, scale, clipped, kind) -> None:
        self.keys.append(key)

    def synapses(self, key, spikes, proj) -> None:
        pass


def test_a_run_of_either_model_reports_the_same_sites_in_the_same_order(tiny_checkpoint):
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    ids = torch.tensor([encode(emulator.loaded.tokenizer, TINY_TEXT)[:12]])
    trace: dict[str, torch.Tensor] = {}
    probe = _SiteOrder()
    with torch.no_grad():
        emulator.loaded.model(ids, None, trace)
        emulator.integer(ids, None, probe)
    only = (S.SPIKES, S.ACCUMULATOR_SUFFIX, "." + S.G_NORM, "." + S.HIDDEN_CODE)
    assert list(trace) == [key for key in probe.keys if not key.endswith(only)]
    assert set(trace) > {S.EMBEDDINGS, S.layer_key(1, S.HIDDEN), S.layer_key(1, S.GATE_HALF), S.LOGITS}
