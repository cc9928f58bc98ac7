"""Running an analysis from a page: cached per settings, with progress and Stop.

Finished analyses live in the process-wide `inspector.serve.run_cache.RUNS`, shared by every session
with the same settings and under one memory budget; a session owns at most four, and they are
released when the session ends (`inspector.ui.lifecycle`).

Small models (the sample models) run automatically whenever a setting changes, so that changing a
bit width immediately shows its effect; larger checkpoints wait for the Run button. Clicking Stop
interrupts the run (Streamlit stops the script on any interaction) and remembers not to restart it.
Long analyses (Lava, large checkpoints: `is_heavy`) first wait for a turn in the server's job queue,
and stop at the next token once their tab is closed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from inspector.compare.analysis import Analysis, analyze
from inspector.compare.diff import DiffResult
from inspector.compare.local_error import LocalErrorResult, local_vs_cumulative
from inspector.errors import InspectorError
from inspector.quant.precision import max_fan_in, precision_notes
from inspector.serve.jobs import QUEUE, Job
from inspector.serve.run_cache import RUNS
from inspector.ui.export import set_metadata
from inspector.ui.jobs import line_text, waiter
from inspector.ui.lifecycle import on_session_end, session_id
from inspector.ui.sidebar import Session, backend_for, render_sidebar, settings_problems
from inspector.ui.text import plain
from inspector.views.exports import bundle_zip, run_metadata

AUTO_RUN_MAX_PARAMETERS = 50_000_000
# A safety net, not a limit on analyses: a session waiting for another session's identical run gives
# up after this long with a message (the longest run measured here, 370M on Lava, takes about 25 min).
RUN_WAIT_S = 60 * 60


class LavaBackendRegistry:
    """`LavaBackend.detach_everywhere` without importing Lava in sessions that never use it."""

    @staticmethod
    def detach_everywhere(owner, keep=None) -> None:
        import sys

        backend = sys.modules.get("inspector.backends.lava.backend")
        if backend is not None:  # imported only once some session chose Lava
            backend.LavaBackend.detach_everywhere(owner, keep=keep)
PHASES = {"float": "float model generating", "integer": "integer model generating", "diff": "comparing in lockstep"}


def _free_when_session_ends(owner: str) -> None:
    """Register (again) what frees this session's runs and Lava graph when it ends. Called again after
    each new claim: a tab closed while its run went on is reaped before the run puts its result or
    attaches to a graph, and that claim must be freed by a later round of the reaper, not kept forever."""
    on_session_end("runs", lambda: RUNS.release(owner))
    on_session_end("lava", lambda: LavaBackendRegistry.detach_everywhere(owner))


def _stop(key: tuple) -> None:
    st.session_state["stopped_key"] = key


def _request(key: tuple) -> None:
    st.session_state["stopped_key"] = None
    st.session_state["requested_key"] = key


def is_heavy(session: Session) -> bool:
    """Whether this analysis is a long job that waits in the server's job queue (`inspector.serve.jobs`).

    Decided by what makes an analysis long: a backend whose runs are long jobs (`BackendEntry.long_job`:
    Lava, a simulator process per graph, minutes per token at published sizes) or a checkpoint too
    large to run automatically (it waits for the Run button; 370M takes minutes). Analyses of small
    models (the sample models: seconds) run at once and do not hold a place in line; their
    de-duplication is the run cache's, as for every analysis."""
    return session.backend.entry.long_job or session.loaded.model.num_parameters() > AUTO_RUN_MAX_PARAMETERS


@contextmanager
def heavy_turn(session: Session, owner: str, progress) -> Iterator[Job | None]:
    """A turn in the job queue for a heavy analysis (None for a light one, which runs at once)."""
    if not is_heavy(session):
        yield None
        return

    def on_wait(position: int) -> None:  # redrawn every poll: where Streamlit can stop this session
        progress.progress(0.0, text=f"This analysis is a long job: {line_text(position)}.")

    with QUEUE.slot(session.run_key, f"Analysis of {session.loaded.name}", waiter(), on_wait) as job:
        yield job


def ensure_analysis(session: Session) -> Analysis | None:
    if not session.backend.available:  # the sidebar offers only available backends; kept as a guard
        st.error(f"{session.backend.label} cannot run here: {session.backend.reason}")
        return None
    owner = session_id()
    _free_when_session_ends(owner)
    if session.backend.key == "emulator":  # a Lava graph this session used before may be closed now
        LavaBackendRegistry.detach_everywhere(owner)
    key = session.run_key
    cached = RUNS.get(key, owner)
    if cached is not None:
        return cached
    small = session.loaded.model.num_parameters() <= AUTO_RUN_MAX_PARAMETERS
    requested = st.session_state.get("requested_key") == key
    if st.session_state.get("stopped_key") == key or not (small or requested):
        reason = "The last run was stopped." if st.session_state.get("stopped_key") == key else "This model is large."
        st.info(f"{reason} Press Run to generate and analyse {session.sampling.max_new_tokens} tokens.")
        st.button("Run", type="primary", on_click=_request, args=(key,), key="run_button")
        return None

    st.button("Stop", on_click=_stop, args=(key,), key="stop_button", help="Interrupt this run")
    progress = st.progress(0.0, text="Preparing the integer model…")
    try:
        backend = backend_for(session)
        # This session now uses this backend only: a Lava graph no session uses any more is closed.
        LavaBackendRegistry.detach_everywhere(owner, keep=backend)
        backend.attach(owner)
        _free_when_session_ends(owner)  # again: the session may have been reaped while this run went on

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase == "wait":
                progress.progress(0.45, text=session.backend.entry.wait_text(done))
                return
            share = {
                "float": 0.0, "integer": 0.45, "diff": 0.9,
            }[phase] + (0.45 if phase != "diff" else 0.1) * done / max(total, 1)
            where = f" on {session.backend.label}" if phase == "integer" else ""
            text = f"{PHASES[phase]}{where}: {done}/{total}"
            if phase == "integer" and done == 0 and session.backend.entry.starting:
                text += f" ({session.backend.entry.starting})"
            progress.progress(min(share, 1.0), text=text)

        left, right = st.columns(2)
        left.caption("Float model")
        right.caption(f"Integer model · {session.backend.label}")
        streams = {"float": left.empty(), "integer": right.empty()}

        def on_token(phase: str, text: str) -> None:
            streams[phase].code(session.prompt + text, language=None, wrap_lines=True)

        def on_wait(seconds: float) -> None:  # redrawn every poll: where Streamlit can stop this session
            progress.progress(0.0, text=(
                f"Waiting for another session that is computing the same analysis ({seconds:.0f} s); "
                "its result will be shown here."
            ))

        with st.spinner("Running the float and the integer model…"), RUNS.computing(key, on_wait, RUN_WAIT_S):
            analysis = RUNS.get(key, owner)  # another session with the same settings may have just finished it
            if analysis is None:
                with heavy_turn(session, owner, progress) as job:
                    def on_progress_checked(phase: str, done: int, total: int) -> None:
                        on_progress(phase, done, total)
                        if job is not None:
                            job.check()  # cancelled (the tab was closed): stop at this token

                    analysis = analyze(
                        backend, session.prompt, session.sampling, on_progress_checked, on_token=on_token,
                        window=session.window,
                    )
                RUNS.put(key, analysis, analysis.nbytes(), owner)
        _free_when_session_ends(owner)  # the result now held for this session, whoever computed it
    except InspectorError as exc:
        progress.empty()
        st.error(plain(exc))
        return None
    progress.empty()
    st.rerun()  # redraw from the cache, without the Stop button and the progress bar


def local_split(session: Session, diff: DiffResult) -> LocalErrorResult:
    """Local vs cumulative error of this session's analysis, over its per-neuron window, kept in the
    run cache beside the analysis: shared by sessions with the same settings, counted in the cache's
    memory budget, and freed with the session (never in session state, which outlives a closed tab)."""
    owner = session_id()
    key = ("local_split", session.run_key)
    split = RUNS.get(key, owner)
    if split is not None:
        return split

    def on_wait(seconds: float) -> None:
        waiting.caption(f"Waiting for another session computing the same split ({seconds:.0f} s)…")

    waiting = st.empty()
    with st.spinner("Feeding every site the float model's values…"), RUNS.computing(key, on_wait, RUN_WAIT_S):
        split = RUNS.get(key, owner)
        if split is None:
            split = local_vs_cumulative(backend_for(session), diff.ids, diff)
            RUNS.put(key, split, split.nbytes(), owner)
    waiting.empty()
    _free_when_session_ends(owner)
    return split


def page_analysis() -> tuple[Session, Analysis]:
    """Sidebar + analysis for a page; stops the page (after saying why) when there is none.

    An invalid setting stops the page before any result is drawn: results of earlier settings are
    never shown as if they belonged to the settings on screen.
    """
    session = render_sidebar()
    if session is None:
        problems = settings_problems()
        if problems:
            said = " ".join(p if p.rstrip().endswith(".") else p.rstrip() + "." for p in problems)
            st.error("Nothing was run: " + plain(said) + " Fix it in the sidebar.")
        else:
            st.warning("Choose a model in the sidebar that loads without errors.")
        st.stop()
    for note in precision_notes(session.qc, max_fan_in(session.loaded.config)):  # it runs, but says what it costs
        st.warning(plain(note + "."), icon=":material/warning:")
    analysis = ensure_analysis(session)
    if analysis is None:
        st.stop()
    if analysis.calibration_status:
        st.sidebar.caption(analysis.calibration_status[0].upper() + analysis.calibration_status[1:] + ".")
    metadata = run_metadata(
        analysis, model=session.loaded.name, directory=str(session.loaded.directory),
        parameters=session.loaded.model.num_parameters(), qc=session.qc, backend=session.backend.key,
    )
    set_metadata(metadata)
    tokenizer = session.loaded.tokenizer
    st.sidebar.download_button(
        "Download everything (zip)", lambda: bundle_zip(analysis, tokenizer, metadata), "loihi_lm_inspector_run.zip",
        "application/zip", key="bundle", on_click="ignore", icon=":material/download:",
        help="All tables (Parquet and CSV), run.json, a column dictionary and the figures as one self-contained HTML page.",
    )
    return session, analysis
