"""What a sweep evaluates: per-knob sensitivity, then a greedy bit-width search within a loss budget.

Sensitivity: the base QuantConfig, then each knob alone set to its lower setting and to its most
precise one (for all layers), and, for knobs that can differ per layer, each layer alone lowered.

Search (greedy, one knob step per round): every round tries each still-open bit-width knob one step
lower than the current config (and, for groups with event-driven messaging, each threshold one rung
higher), all in parallel; of the candidates whose validation bits/char stay
within `budget_pct` percent of the float model's, the one that adds least KL from the float model
is kept (chosen by KL, not bits/char: on a few hundred tokens a narrower width can lower bits/char
by chance, and choosing by that noise would walk the search toward it). A knob whose
step breaks the budget is closed (the later, narrower configs only lose more). The search ends when
no knob is open. The winner is written as a QuantConfig file the sidebar and `--quant-file` load.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from inspector.quant.config import QuantConfig
from inspector.quant.files import save_quant_config
from inspector.sweep.evaluate import Point, SweepSpec
from inspector.sweep.knobs import knobs
from inspector.sweep.runner import ResultFn, SweepRunner

WINNER_FILE = "best_quant_config.json"
SEARCH_FILE = "search.json"
DEFAULT_BUDGET_PCT = 0.5

# on_phase(name, points in the phase): "sensitivity", then "search round k"
PhaseFn = Callable[[str, int], None]


def point(kind: str, knob: str, base: QuantConfig, value: Any = None, layer: int = -1) -> Point:
    """A point with one field changed; not validated here, so a setting the config rejects is
    evaluated (and recorded) as a failed point that says why."""
    fields = base.to_dict()
    if knob:
        fields[knob] = value
    return Point(kind, knob, value if knob else None, json.dumps(fields, sort_keys=True), layer)


def sensitivity_points(
    base: QuantConfig, layers: int, per_layer: bool = True, lower: Optional[dict[str, Any]] = None
) -> list[Point]:
    """Base, every knob lowered and raised, and (per_layer) every per-layer knob lowered in one layer.

    `lower` overrides the table's lower settings (e.g. {"state_bits": 4} to see a crippled state).
    """
    lower = lower or {}
    found, _ = knobs(base)
    unknown = sorted(set(lower) - {k.name for k in found})
    if unknown:
        from inspector.sweep.evaluate import SweepError

        raise SweepError(f"not a swept QuantConfig knob: {', '.join(unknown)}; knobs: {', '.join(k.name for k in found)}")
    points = [point("base", "", base)]
    for knob in found:
        low = lower.get(knob.name, knob.lower)
        for kind, value in (("lower", low), ("raise", knob.precise)):
            if value != getattr(base, knob.name):
                points.append(point(kind, knob.name, base, value))
    if per_layer:
        for knob in found:
            low = lower.get(knob.name, knob.lower)
            if knob.per_layer and low != getattr(base, knob.name):
                points.extend(point("lower", knob.name, base, low, layer) for layer in range(layers))
    return points


@dataclass
class SearchResult:
    winner: QuantConfig
    steps: list[dict[str, Any]] = field(default_factory=list)  # the accepted rows, in order
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every evaluated candidate
    note: str = ""


def bit_width_search(
    runner: SweepRunner,
    base: QuantConfig,
    budget_pct: float = DEFAULT_BUDGET_PCT,
    on_result: Optional[ResultFn] = None,
    on_phase: Optional[PhaseFn] = None,
    stop: Optional[threading.Event] = None,
    max_rounds: int = 64,
    only: Optional[set[str]] = None,
) -> SearchResult:
    """`only`: search these knobs alone (e.g. the messaging thresholds), the others stay as in `base`."""
    found, _ = knobs(base)
    ladder = {k.name: k for k in found if k.searchable and (only is None or k.name in only)}
    base_rows = runner.run([point("base", "", base)], on_result, stop)
    result = SearchResult(base)
    if not base_rows or base_rows[0].get("status") != "ok":
        result.note = "the base QuantConfig could not be evaluated"
        return result
    if base_rows[0]["delta_bpc_pct"] > budget_pct:
        result.note = (
            f"the base QuantConfig already loses {base_rows[0]['delta_bpc_pct']:.2f}% bits/char, more than the "
            f"{budget_pct}% budget: nothing was lowered"
        )
        return result
    current, open_knobs = base, set(ladder)
    for round_no in range(1, max_rounds + 1):
        if stop is not None and stop.is_set():
            result.note = "stopped"
            break
        candidates = []
        for name in sorted(open_knobs):
            nxt = ladder[name].ladder(getattr(current, name))
            if nxt is None:
                open_knobs.discard(name)
            else:
                candidates.append(point("search", name, current, nxt))
        if not candidates:
            break
        if on_phase is not None:
            on_phase(f"search round {round_no}", len(candidates))
        rows = runner.run(candidates, on_result, stop)
        result.candidates.extend(rows)
        within = []
        for cand, row in zip(candidates, rows, strict=False):
            if row.get("status") == "ok" and row["delta_bpc_pct"] <= budget_pct:
                within.append((row["mean_kl"], cand, row))
            else:
                open_knobs.discard(cand.knob)
        if not within:
            break
        _, best, row = min(within, key=lambda item: item[0])
        current = best.qc()
        result.steps.append(row | {"round": round_no, "knob": best.knob, "setting": best.setting})
    result.winner = current
    return result


@dataclass
class SweepOutcome:
    out_dir: Path
    points: int
    failed: int
    search: Optional[SearchResult]
    stopped: bool


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    budget_pct: float = DEFAULT_BUDGET_PCT,
    search: bool = True,
    per_layer: bool = True,
    lower: Optional[dict[str, Any]] = None,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    on_result: Optional[ResultFn] = None,
    on_phase: Optional[PhaseFn] = None,
    stop: Optional[threading.Event] = None,
    search_rounds: int = 64,
) -> SweepOutcome:
    """Sensitivity, then (if `search`) the bit-width search; everything lands in `out_dir`."""
    out_dir = Path(out_dir)
    layers = spec.loaded.config.num_hidden_layers
    points = sensitivity_points(spec.base, layers, per_layer, lower)
    _, skipped = knobs(spec.base)
    with SweepRunner(spec, out_dir, address, workers) as runner:
        runner.write_meta(budget_pct=budget_pct, not_swept=skipped, model_name=spec.loaded.name)
        if on_phase is not None:
            on_phase("sensitivity", len(points))
        runner.run(points, on_result, stop)
        outcome = None
        if search and not (stop is not None and stop.is_set()):
            outcome = bit_width_search(runner, spec.base, budget_pct, on_result, on_phase, stop, search_rounds)
            winner_row = outcome.steps[-1] if outcome.steps else None
            save_quant_config(
                outcome.winner, out_dir / WINNER_FILE, model=str(spec.loaded.directory), budget_pct=budget_pct,
                bits_per_char=winner_row["bits_per_char"] if winner_row else None,
                delta_bpc_pct=winner_row["delta_bpc_pct"] if winner_row else None, note=outcome.note,
            )
            (out_dir / SEARCH_FILE).write_text(
                json.dumps({"budget_pct": budget_pct, "note": outcome.note, "steps": [
                    {
                        k: s[k] for k in (
                            "round", "knob", "setting", "point_id", "bits_per_char", "delta_bpc_pct", "energy_per_token_uj",
                            "cores", "chips"
                        )
                    }
                    for s in outcome.steps
                ]}, indent=2) + "\n",
                encoding="utf-8",
            )
        frame = runner.store.frame()
    failed = int((frame["status"] != "ok").sum()) if frame.height else 0
    return SweepOutcome(out_dir, frame.height, failed, outcome, bool(stop is not None and stop.is_set()))
