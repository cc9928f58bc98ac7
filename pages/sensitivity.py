"""Sensitivity: which QuantConfig knobs matter, and the smallest widths within a loss budget."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import streamlit as st

from inspector.errors import InspectorError
from inspector.lm.catalog import validation_text
from inspector.lm.paths import RESULT_FILE, SWEEP_OUTPUT, SWEEP_RESULTS, checked_path, read_limited
from inspector.serve.jobs import CANCELLED, FAILED
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.results import base_row, failed_points, pareto_front, read_sweep, sensitivity_table
from inspector.sweep.study import DEFAULT_BUDGET_PCT
from inspector.ui.export import chart, table_downloads
from inspector.ui.jobs import job_status
from inspector.ui.numbers import number_box
from inspector.ui.sidebar import app_access, render_sidebar
from inspector.ui.sweeps import (
    default_sweep_dir,
    existing_sweeps,
    follow,
    job_for,
    other_running,
    running_job,
    start_sweep,
    sweep_progress,
)
from inspector.ui.text import plain
from inspector.views.sensitivity_figures import pareto_figure, sensitivity_figure

st.title("Sensitivity")
session = render_sidebar()
if session is None:
    st.warning("Choose a model in the sidebar that loads without errors.")
    st.stop()
st.caption(
    "Each point is the integer model with one QuantConfig knob changed (lowered, or raised to its most "
    "precise setting; per-layer knobs also one layer at a time), teacher-forced on a held-out text at "
    "once. Δ KL: mean next-token KL from the float model, minus the base config's. The search then "
    "lowers widths greedily while bits/char stay within the budget. Points run as Ray tasks on a "
    "local Ray instance; results are written to Parquet as they finish, and a re-run resumes. A sweep "
    "is a long job: it waits in line behind other long jobs of this server, and stops when no open tab "
    "follows it."
)


def _use_winner(path: str) -> None:
    st.session_state["keep.q_file"] = path
    st.session_state["q_file"] = path


def show_results(out_dir: Path) -> None:
    try:
        sweep = read_sweep(out_dir)
    except InspectorError as exc:
        st.info(plain(exc))
        return
    points = sweep["points"]
    base = base_row(points)
    if base is not None:
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Float bits/char", f"{base['float_bits_per_char']:.4f}")
        c2.metric(
            "Base integer bits/char", f"{base['bits_per_char']:.4f}", f"{base['delta_bpc_pct']:+.2f}%", delta_color="inverse",
        )
        c3.metric("Cores / chips", f"{base['cores']} / {base['chips']}")
        c4.metric("Energy per token", f"{base['energy_per_token_uj']:.1f} uJ")
    table = sensitivity_table(points)
    if table.height:
        whole = table.filter(pl.col("layer") == "all")
        chart(sensitivity_figure(whole), "sensitivity")
        st.dataframe(whole, hide_index=True, width="stretch")
        table_downloads(table, "sensitivity")
        per_layer = table.filter(pl.col("layer") != "all")
        if per_layer.height:
            st.markdown("**Per layer** (one layer lowered, the others at the base config)")
            st.dataframe(per_layer.drop("raised_to", "raise_dbpc_pct", "raise_dkl"), hide_index=True, width="stretch")
    search = sweep["search"]
    ok_all = points.filter((pl.col("status") == "ok") & (pl.col("layer") < 0)) if points.height else points
    if ok_all.height > 1:
        st.subheader("Bit-width search: accuracy vs chip cost")
        steps = search["steps"] if search else []
        winner_id = steps[-1]["point_id"] if steps else None
        chart(pareto_figure(points, pareto_front(points), winner_id), "pareto")
        st.caption(
            "Energy per token is the hardware estimate's, from each point's own message and synaptic-op counts. "
            "Orange points send event-driven messages (knobs `messaging_*`; with a group in delta or threshold "
            "mode its `vth_*` becomes a knob the search raises): they trade accuracy for messages, not for bits."
        )
        if search is not None:
            st.caption(f"Budget: +{search['budget_pct']}% bits/char over the float model. {plain(search.get('note') or '')}")
            if steps:
                st.dataframe(pl.DataFrame(steps), hide_index=True, width="stretch")
    if sweep["winner_file"] is not None:
        path = str(sweep["winner_file"])
        try:  # read as any typed path is: a winner file that is a link out of the roots, or huge, is refused
            winner = read_limited(checked_path(path, RESULT_FILE, app_access()), RESULT_FILE.max_bytes, RESULT_FILE.what)
        except InspectorError as exc:
            st.error(plain(exc))
        else:
            st.success(f"Winning QuantConfig: {plain(path)}")
            st.button("Use it in the sidebar", on_click=_use_winner, args=(path,), key="use_winner")
            st.download_button(
                "Download best_quant_config.json", winner, "best_quant_config.json", "application/json", key="dl_winner",
            )
    failed = failed_points(points)
    if failed.height:
        st.warning(f"{failed.height} point(s) failed; each is kept with its error:")
        st.dataframe(failed, hide_index=True, width="stretch")


source = st.radio("Results", ["Run a sweep for the loaded model", "Open existing results"], key="sweep_source", horizontal=True)
if source == "Open existing results":
    found = existing_sweeps()
    options = [str(p) for p in found]
    typed = st.text_input("Sweep directory", options[0] if options else "", key="sweep_open_dir",
                          help="A directory written by `python -m inspector sweep --out DIR` or by this page.")
    st.session_state.pop("sweep_dir", None)
    if typed.strip():
        try:
            st.session_state["sweep_dir"] = str(checked_path(typed, SWEEP_RESULTS, app_access()))
        except InspectorError as exc:
            st.error(plain(exc))
else:
    loaded = session.loaded
    try:
        default_text = validation_text(loaded)
    except InspectorError:
        default_text = ""
    c1, c2, c3 = st.columns(3)
    with c1:
        max_tokens = number_box("Held-out tokens per point", 16, 8192, 256, "sweep_tokens")
    with c2:
        budget = number_box("Search budget (+% bits/char)", 0.0, 100.0, DEFAULT_BUDGET_PCT, "sweep_budget", step=0.1)
    with c3:
        workers = number_box("Ray workers (CPUs)", 1, os.cpu_count() or 1, os.cpu_count() or 1, "sweep_workers")
    c1, c2 = st.columns(2)
    per_layer = c1.checkbox("Per-layer points", True, key="sweep_per_layer")
    search = c2.checkbox("Bit-width search", True, key="sweep_search")
    text = default_text
    if not default_text:
        text = st.text_area("Held-out text (this model has no known validation split)", "", key="sweep_text", height=120)
    else:
        st.caption(f"Held-out text: the validation split of {loaded.card.get('corpus')} ({len(default_text):,} characters).")
    typed_out = st.text_input(
        "Output directory", str(default_sweep_dir(loaded, session.qc, max_tokens or 256)), key="sweep_out",
        help="Where the sweep writes points.parquet, its metadata and the winning QuantConfig.",
    )
    replace = st.checkbox(
        "Replace existing results", False, key="sweep_replace",
        help="Write into a directory that already holds files: a sweep of the same settings resumes, files of the same "
        "name are replaced. Without it, only a new or empty directory is written.",
    )
    out_dir: Path | None = None
    try:
        located = checked_path(typed_out, SWEEP_OUTPUT, app_access(), replace=True)  # where, and whether it may be there
        if job_for(located) is None:  # a sweep this server started there is shown (and resumed), not refused
            checked_path(typed_out, SWEEP_OUTPUT, app_access(), replace=replace)
        out_dir = located
    except InspectorError as exc:
        st.error(plain(exc))
    busy = running_job(out_dir) if out_dir is not None else None
    elsewhere = other_running(out_dir) if out_dir is not None else None
    if elsewhere is not None:
        st.info(
            f"Another sweep is queued or running ({plain(elsewhere.detail.out_dir)}); one sweep runs at a time. "
            "Open it with 'Open existing results'.",
        )
    settings_ok = None not in (max_tokens, budget, workers, out_dir)
    startable = settings_ok and busy is None and elsewhere is None
    clicked = st.button(
        "Start sweep", type="primary", key="sweep_start", disabled=not startable,
        help=None if settings_ok else "Fix the settings marked above first.",
    )
    if clicked and startable:  # checked here too: a disabled button is only a hint to the browser
        try:
            ids, chars = held_out_ids(loaded, text, max_tokens)
            spec = SweepSpec(loaded, ids, chars, session.qc)
            start_sweep(spec, out_dir, {"budget_pct": budget, "search": search, "per_layer": per_layer, "workers": workers})
        except InspectorError as exc:
            st.error(plain(exc))
    if out_dir is not None:
        st.session_state["sweep_dir"] = str(out_dir)
    else:
        st.session_state.pop("sweep_dir", None)

current = st.session_state.get("sweep_dir")
if current:
    current_dir = Path(current)
    job = follow(current_dir)  # a sweep running there: this tab follows it too
    was_running = job is not None

    @st.fragment(run_every=2.0 if was_running else None)
    def live() -> None:
        job = job_for(current_dir)
        if was_running and (job is None or job.finished):
            st.rerun()  # the sweep ended: redraw the page once, without the timer
        if job is not None and not job.finished:
            job_status(job, "sweep_stop", cancel_for_everyone=True, describe=sweep_progress)
        elif job is not None and job.state == FAILED:
            st.error(f"The sweep failed: {plain(job.error)}")
        elif job is not None and job.state == CANCELLED:
            st.info("The sweep was stopped; start it again to resume.")
        show_results(current_dir)

    live()
