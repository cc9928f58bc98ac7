"""The README's float vs integer table ("How close the integer model comes") is what
`python -m inspector quality` prints now.

The table is parsed from README.md, so the test fails when the README and the code diverge, in
either direction. The integer model is deterministic (the same integers on every run and thread
count), so the tolerance is the README's rounding: bits/char to 4 decimals, percentages to 0.01
(difference) and 0.1 (top-1 agreement) percentage points.

Cost: the command reads the whole validation split with both models (about 30 s for tinystories,
60 s for shakespeare on one core). The smaller model's rows always run; the shakespeare row runs
its integer model over the whole split only with INSPECTOR_FULL_QUALITY=1 and otherwise checks
its float bits/char and its top-1 agreement, which are cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from inspector.backends.emulator import Emulator
from inspector.cli import main as cli_main
from inspector.compare.diff import compare
from inspector.lm.catalog import sample_models, validation_text
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.tokenizer import encode_document
from inspector.lm.train import bits_per_character
from inspector.quant.config import QuantConfig

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| model | float bits/char | integer bits/char | difference | top-1 agreement (512 val tokens) |"
ROW_NAME = re.compile(r"^(?P<model>\w+)(?:, `--quant-preset (?P<preset>[\w-]+)`)?$")
OUTPUT = re.compile(
    r"float (?P<float>[\d.]+) bits/char, integer (?P<int>[\d.]+) bits/char \((?P<diff>[+-][\d.]+)%\); "
    r"top-1 agreement on (?P<n>\d+) tokens (?P<agree>[\d.]+)"
)
FULL = os.environ.get("INSPECTOR_FULL_QUALITY") == "1"


def readme_rows() -> list[dict]:
    """The table's rows: model, preset, float and integer bits/char, difference (%), agreement (%)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2  # the header, then the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = ROW_NAME.match(cells[0])
        assert name and len(cells) == 5, f"README quality row not understood: {line}"
        rows.append(
            {
                "model": name["model"],
                "preset": name["preset"] or "default",
                "float": float(cells[1]),
                "int": float(cells[2]),
                "diff_pct": float(cells[3].rstrip("%")),
                "agree_pct": float(cells[4].rstrip("%")),
            }
        )
    return rows


ROWS = readme_rows()


def test_the_readme_table_covers_both_sample_models():
    assert {row["model"] for row in ROWS} == {"shakespeare", "tinystories"}
    assert all(row["model"] in sample_models() for row in ROWS)


@pytest.fixture()
def one_thread():
    """One thread: on a busy 2-core machine, torch's second thread mostly waits for the first."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _check(row: dict, float_bpc: float, agree: float, int_bpc: float | None) -> None:
    assert float_bpc == pytest.approx(row["float"], abs=5e-5 + 1e-9), "float bits/char"
    assert 100 * agree == pytest.approx(row["agree_pct"], abs=0.05 + 1e-9), "top-1 agreement"
    if int_bpc is not None:
        assert int_bpc == pytest.approx(row["int"], abs=5e-5 + 1e-9), "integer bits/char"
        assert 100 * (int_bpc / float_bpc - 1) == pytest.approx(row["diff_pct"], abs=0.005 + 1e-9), "difference"


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["model"] != "shakespeare" or FULL], ids=lambda r: f"{r['model']}-{r['preset']}",
)
def test_readme_quality_row_is_what_the_quality_command_prints(row, capsys, one_thread):
    """The README's command itself, parsed from its last line."""
    assert cli_main(["quality", "--model", row["model"], "--quant-preset", row["preset"]]) == 0
    printed = OUTPUT.search(capsys.readouterr().out)
    assert printed and printed["n"] == "512"
    _check(row, float(printed["float"]), float(printed["agree"]), float(printed["int"]))
    # the printed figures are rounded; the README must match them as printed, too
    assert (float(printed["float"]), float(printed["int"])) == (row["float"], row["int"])


@pytest.mark.skipif(FULL, reason="the full row runs in test_readme_quality_row_is_what_the_quality_command_prints")
@pytest.mark.parametrize("row", [r for r in ROWS if r["model"] == "shakespeare"], ids=lambda r: f"{r['model']}-{r['preset']}")
def test_readme_quality_row_float_and_agreement(row, one_thread):
    """The larger model's float bits/char over the whole split and its top-1 agreement on the first
    512 validation tokens (what `quality` computes, without its integer pass over the whole split)."""
    loaded = load_checkpoint(sample_models()[row["model"]])
    text = validation_text(loaded)
    ids = torch.tensor(encode_document(loaded.tokenizer, text))
    emulator = Emulator(loaded, QuantConfig.preset(row["preset"]))
    agree = compare(emulator, ids[:512].tolist()).tokens["agree"].mean()
    _check(row, bits_per_character(loaded.model, ids, len(text)), agree, None)
