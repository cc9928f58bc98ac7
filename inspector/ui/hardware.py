"""Streamlit glue of the Hardware page: the what-if widgets and the cached published measurements
(measured through the job queue, `inspector.serve.jobs`).

Every widget that can hold an invalid value shows its message next to itself and returns None, so
the page skips only what depends on it and keeps the rest usable.
"""

from __future__ import annotations

import dataclasses
import json

import streamlit as st

from inspector.chip.activity_cache import published_activity
from inspector.chip.context_length import TRANSFORMER_LABELS, TRANSFORMER_SOURCES, ContextError, TransformerBaseline
from inspector.chip.costs import COST_LABELS, CUSTOM, FITTED_NAME, PRESETS, CostError, CostPreset, OpCosts, custom_preset
from inspector.chip.limits import HardwareConfig, HardwareConfigError
from inspector.chip.mapper import LAYOUTS, ONE_BLOCK_PER_CHIP, lm_head_group
from inspector.chip.paper import BASELINE_LABELS, JETSON_DEFAULTS, JETSON_SOURCE, BaselineError, GpuBaseline
from inspector.chip.published import MeasuredActivity
from inspector.chip.report import Evaluation, evaluate, what_if_rows
from inspector.errors import InspectorError
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.quant.config import QuantConfig
from inspector.serve.jobs import QUEUE, Job
from inspector.serve.run_cache import _release_to_os
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
LAYOUT_LABELS = {ONE_BLOCK_PER_CHIP: "one block per chip (as the paper deployed)", "packed": "packed (fill every chip)"}


def what_if_hardware() -> tuple[HardwareConfig | None, bool]:
    """The per-core limits, synapse bits and core sharing the user chose; None (with a message beside
    the limits) when they do not make a valid core."""
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
        value = column.number_input(label, value=int(kept(key, getattr(defaults, name) // unit)), step=1, key=key)
        values[name] = int(keep(key, value)) * unit
    try:
        return defaults.with_overrides(values), bool(share)
    except HardwareConfigError as exc:
        st.error(f"These limits are not a valid core: {exc}. The core map and the estimates wait for valid limits.")
        return None, bool(share)


def layout_choice() -> tuple[str, bool]:
    """The chip layout and whether the LM head is mapped on chip."""
    left, right = st.columns(2)
    options = list(LAYOUTS)[::-1]  # one block per chip first: the paper's layout
    layout = keep("hw_layout", left.radio(
        "Chip layout", options, index=options.index(kept("hw_layout", ONE_BLOCK_PER_CHIP)), key="hw_layout",
        format_func=LAYOUT_LABELS.get, horizontal=True,
    ))
    head = keep("hw_lm_head", right.radio(
        "LM head", ["host", "chip"], index=["host", "chip"].index(kept("hw_lm_head", "host")), key="hw_lm_head",
        horizontal=True, format_func={"host": "on the host (as measured)", "chip": "on chip (mapped)"}.get,
    ))
    return layout, head == "chip"


def cost_preset() -> CostPreset | None:
    """A named preset, or custom costs edited from one (every changed number is marked "set by you");
    None, with the message beside the fields, when an edited number is not a cost."""
    options = [*PRESETS, CUSTOM]
    choice = keep("cost_preset", st.radio(
        "Cost preset", options, index=options.index(kept("cost_preset", FITTED_NAME)), key="cost_preset", horizontal=True,
    ))
    if choice != CUSTOM:
        return PRESETS[choice]
    base = keep("cost_base", st.selectbox(
        "Start from", list(PRESETS), index=list(PRESETS).index(kept("cost_base", FITTED_NAME)), key="cost_base",
    ))
    fields = dataclasses.fields(OpCosts)
    columns = st.columns(4)
    values = {}
    for k, field in enumerate(fields):
        key = f"cost_{base}_{field.name}"
        values[field.name] = keep(key, columns[k % 4].number_input(
            COST_LABELS[field.name], value=float(kept(key, getattr(PRESETS[base].costs, field.name))), format="%.4g", key=key,
        ))
    try:
        return custom_preset(OpCosts(**values), base)
    except CostError as exc:
        st.error(f"{exc}. Nothing below is computed from it: the estimates wait for a valid number.")
        return None


def gpu_baseline() -> GpuBaseline | None:
    """The GPU baseline, defaulting to the paper's Jetson figures; None (message beside it) when invalid."""
    columns = st.columns(len(BASELINE_LABELS))
    values = {}
    for column, (name, label) in zip(columns, BASELINE_LABELS.items(), strict=True):
        values[name] = column.number_input(
            label[0].upper() + label[1:], value=float(JETSON_DEFAULTS[name]), format="%.4g", key=f"base_{name}",
            help=JETSON_SOURCE,
        )
    try:
        return GpuBaseline(**values)
    except BaselineError as exc:
        st.error(f"{exc}. The ratios wait for a valid baseline.")
        return None


def transformer_baseline() -> TransformerBaseline | None:
    """The context-length chart's transformer (defaults: Qwen2.5-0.5B FP16 on a Jetson Orin Nano 8GB)."""
    defaults = TransformerBaseline()
    columns = st.columns(4)
    values = {}
    for k, field in enumerate(dataclasses.fields(TransformerBaseline)):
        default = getattr(defaults, field.name)
        values[field.name] = columns[k % 4].number_input(
            TRANSFORMER_LABELS[field.name][0].upper() + TRANSFORMER_LABELS[field.name][1:], value=default,
            step=1 if isinstance(default, int) else None, format=None if isinstance(default, int) else "%.4g",
            key=f"ctx_{field.name}", help=TRANSFORMER_SOURCES[field.name],
        )
    try:
        return TransformerBaseline(**values)
    except ContextError as exc:
        st.error(f"{exc}. The chart waits for a valid value.")
        return None


@st.cache_resource(show_spinner=False, max_entries=6)
def cached_published(name: str, qc: QuantConfig) -> MeasuredActivity | None:
    """A published size's cached measurement, or None when it has not been measured for this QuantConfig."""
    return published_activity(name, qc, measure=False)


@st.cache_resource(show_spinner="Re-mapping and estimating the published sizes…", max_entries=24)
def cached_published_evaluation(
    name: str, qc: QuantConfig, hw: HardwareConfig, share: bool, costs: OpCosts, prompt_tokens: int,
    layout: str = ONE_BLOCK_PER_CHIP, lm_head_on_chip: bool = False,
) -> Evaluation | None:
    """A published size's estimate under these settings (2.7B takes seconds: widgets that do not
    change the settings, like the paper's baseline, must not pay for it again)."""
    measured = cached_published(name, qc)
    if measured is None:
        return None
    head = lm_head_group(HGRNBitConfig(**PUBLISHED_CONFIGS[name])) if lm_head_on_chip else None
    return evaluate(name, measured.weights, measured.groups, measured.activity, hw, share, costs, prompt_tokens, layout, head)


@st.cache_resource(show_spinner="Estimating what each change does…", max_entries=8)
def cached_what_ifs(name: str, qc: QuantConfig, costs: OpCosts, prompt_tokens: int) -> list[tuple[str, Evaluation]] | None:
    """A published size's what-if rows (`what_if_rows`), or None when it has not been measured."""
    measured = cached_published(name, qc)
    if measured is None:
        return None
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    return what_if_rows(name, measured.weights, measured.groups, measured.activity, config, costs, prompt_tokens)


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
        cached_what_ifs.clear()

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
        cached_what_ifs.clear()

    follow_job(job, key, on_finished=refresh)
