"""Streamlit glue of the Hardware page: the what-if widgets and the cached published measurements
(measured through the job queue, `inspector.jobs`)."""

from __future__ import annotations

import dataclasses
import json

import streamlit as st

from inspector.activity_cache import published_activity
from inspector.costs import CUSTOM, PRESETS, CostPreset, OpCosts, custom_preset
from inspector.emulator.hardware import HardwareConfig
from inspector.errors import InspectorError
from inspector.hardware_report import Evaluation, evaluate
from inspector.jobs import QUEUE, Job
from inspector.published_activity import MeasuredActivity
from inspector.quant.config import QuantConfig
from inspector.run_cache import _release_to_os
from inspector.ui.jobs import follow_job, waiter
from inspector.ui.sidebar import keep, kept

# what-if widgets: HardwareConfig field -> (label, unit divisor); memory sizes are edited in KiB
LIMITS = {
    "cores_per_chip": ("Neuro-cores per chip", 1),
    "max_neurons_per_core": ("Neurons per core", 1),
    "core_sram_bytes": ("SRAM per core (KiB)", 1024),
    "synapse_memory_bytes": ("Synapse memory per core (KiB)", 1024),
    "bytes_per_neuron": ("Bytes of state per neuron", 1),
}


def what_if_hardware() -> tuple[HardwareConfig, bool]:
    """The per-core limits, synapse bits and core sharing the user chose (raises HardwareConfigError)."""
    defaults = HardwareConfig()
    bits = keep("hw_bits", st.select_slider(
        "Synapse storage bits per ternary weight", [1, 2, 4, 8, 16], kept("hw_bits", defaults.bits_per_synapse), key="hw_bits",
        help="8 as today (the paper stores 8-bit weights); 2 if ternary weights were packed (log2(3) = 1.58 bits is the floor).",
    ))
    share = keep("hw_share", st.toggle(
        "Neuron groups of a layer may share a core", kept("hw_share", False), key="hw_share",
        help="Off: every core runs one neuron program (what the emulator and the Lava graph do).",
    ))
    values = {"bits_per_synapse": int(bits)}
    columns = st.columns(len(LIMITS))
    for column, (name, (label, unit)) in zip(columns, LIMITS.items(), strict=True):
        key = f"hw_{name}"
        value = column.number_input(label, min_value=1, value=int(kept(key, getattr(defaults, name) // unit)), step=1, key=key)
        values[name] = int(keep(key, value)) * unit
    return defaults.with_overrides(values), bool(share)


def cost_preset() -> CostPreset:
    """A named preset, or custom costs edited from one (every changed number is marked "set by you")."""
    choice = keep(
        "cost_preset",
        st.radio(
            "Cost preset", [*PRESETS, CUSTOM], index=[*PRESETS, CUSTOM].index(kept("cost_preset", next(iter(PRESETS)))),
            key="cost_preset", horizontal=True
        )
    )
    if choice != CUSTOM:
        return PRESETS[choice]
    base = keep(
        "cost_base",
        st.selectbox(
            "Start from", list(PRESETS), index=list(PRESETS).index(kept("cost_base", next(iter(PRESETS)))), key="cost_base"
        )
    )
    fields = dataclasses.fields(OpCosts)
    columns = st.columns(4)
    values = {}
    for k, field in enumerate(fields):
        key = f"cost_{base}_{field.name}"
        values[field.name] = keep(key, columns[k % 4].number_input(
            field.name, min_value=0.0, value=float(kept(key, getattr(PRESETS[base].costs, field.name))), format="%.4g", key=key
        ))
    return custom_preset(OpCosts(**values), base)


@st.cache_resource(show_spinner=False, max_entries=6)
def cached_published(name: str, qc: QuantConfig) -> MeasuredActivity | None:
    """A published size's cached measurement, or None when it has not been measured for this QuantConfig."""
    return published_activity(name, qc, measure=False)


@st.cache_resource(show_spinner="Re-mapping and estimating the published sizes…", max_entries=24)
def cached_published_evaluation(
    name: str, qc: QuantConfig, hw: HardwareConfig, share: bool, costs: OpCosts, prompt_tokens: int
) -> Evaluation | None:
    """A published size's estimate under these settings (2.7B takes seconds: widgets that do not
    change the settings, like the paper's baseline, must not pay for it again)."""
    measured = cached_published(name, qc)
    if measured is None:
        return None
    return evaluate(name, measured.weights, measured.groups, measured.activity, hw, share, costs, prompt_tokens)


def measurement_key(name: str, qc: QuantConfig) -> tuple:
    """One job per published size and QuantConfig: two tabs asking for the same measurement share it."""
    return ("measure", name, json.dumps(qc.to_dict(), sort_keys=True, default=str))


def measurement_job(name: str, qc: QuantConfig) -> Job | None:
    """The queued, running or just finished measurement of `name` for `qc`, if any."""
    return QUEUE.job(measurement_key(name, qc))


def measure_published(name: str, qc: QuantConfig) -> Job:
    """Queue the measurement of one published size (or join the one already queued or running).

    It runs in a thread of the job queue (a heavy job: minutes and GBs for 2.7B) and stops at the
    next layer when cancelled or when no session waits for it; the result lands in the disk cache."""

    def work(job: Job) -> None:
        def on_progress(done: int, total: int, what: str) -> None:
            job.report(done / total, f"random weights, one layer at a time: {what}")

        try:
            published_activity(name, qc, on_progress=on_progress)
        finally:
            _release_to_os()  # the layers it built and freed: give the memory back
        cached_published.clear()
        cached_published_evaluation.clear()

    return QUEUE.submit(measurement_key(name, qc), f"Measuring {name}", work, waiter())


def request_measurement(name: str, qc: QuantConfig) -> None:
    """The Measure button's callback: it runs before the page is drawn, so a click is never lost when
    the page then shows a job another session started instead of the button (the click joins it)."""
    try:
        measure_published(name, qc)
    except InspectorError as exc:  # e.g. this session's limit of queued jobs
        st.session_state[f"measure_error_{name}"] = str(exc)


def measure_button(name: str, qc: QuantConfig, where) -> None:
    """Measure (or wait for the measurement another session started), with the reason it was refused."""
    job = measurement_job(name, qc)
    if job is None or job.finished or waiter() not in job.waiters:
        label = f"Measure {name}" if job is None or job.finished else "Wait for it too"
        where.button(label, key=f"measure_{name}", on_click=request_measurement, args=(name, qc))
    problem = st.session_state.pop(f"measure_error_{name}", None)
    if problem:
        where.error(problem)


def follow_measurement(job: Job, key: str) -> None:
    """Position in line or progress, and Cancel; the page redraws with the result when it is done."""

    def refresh() -> None:
        cached_published.clear()
        cached_published_evaluation.clear()

    follow_job(job, key, on_finished=refresh)
