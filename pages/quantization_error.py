"""Quantization error: where and how much the integer model departs from the float model."""

from __future__ import annotations

import polars as pl
import streamlit as st

from inspector.compare.ab import ab_compare
from inspector.compare.diff import compare
from inspector.compare.local_error import TOP_SITES
from inspector.compare.perplexity import MAX_PERPLEXITY_TOKENS, perplexity_text_ids
from inspector.errors import InspectorError
from inspector.quant.files import quant_spec
from inspector.schema import DEPTH_SITES, HIDDEN, layer_key
from inspector.ui.export import chart, table_downloads
from inspector.ui.runs import local_split, page_analysis
from inspector.ui.sidebar import app_access, backend_for
from inspector.ui.text import plain
from inspector.views.exports import TABLE_NOTES, token_metrics_table
from inspector.views.figures import METRIC_LABELS, kl_agreement_figure, layer_error_figure, scatter_figure, token_error_figure
from inspector.views.sensitivity_figures import ab_sites_figure, ab_tokens_figure, local_cumulative_figure, local_tokens_figure

st.title("Quantization error")
session, analysis = page_analysis()
diff = analysis.diff
st.caption(
    "Both models read the same tokens (the prompt and the integer model's continuation). Every probed "
    "tensor of the integer model is dequantized and compared with the float model's: SQNR = 10 log10 of "
    "signal power over error power (higher is better; each bit adds about 6 dB)."
)
per_layer = diff.per_layer()
st.dataframe(per_layer, hide_index=True, width="stretch", height=300)
table_downloads(per_layer, "per_layer_error", TABLE_NOTES["per_layer_error"])

metric = st.segmented_control(
    "Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get, default="sqnr_db", key="err_metric"
) or "sqnr_db"
sites = st.multiselect(
    "Sites", per_layer["site"].unique(maintain_order=True).to_list(),
    default=list(DEPTH_SITES), key="err_sites",
)
if sites:
    chart(layer_error_figure(diff.tensors, metric=metric, sites=sites), "error_depth")
else:
    st.info("Pick at least one site above to draw the chart.")

c1, c2 = st.columns(2)
layers = sorted(n for n in diff.tensors["layer"].unique().to_list() if n >= 0)
layer = c1.selectbox("Layer", layers, key="err_layer")
site_options = diff.tensors.filter(pl.col("layer") == layer)["site"].unique(maintain_order=True).to_list()
site = c2.selectbox("Tensor", site_options, index=site_options.index(HIDDEN) if HIDDEN in site_options else 0, key="err_site")
a, b = st.columns(2)
with a:
    chart(token_error_figure(diff.tensors, site, layer, metric, analysis.prompt_tokens), "error_tokens")
with b:
    key = layer_key(layer, site)
    chart(
        scatter_figure(diff.float_values[key], diff.int_probe.site_values(key), f"layer {layer} {site}: float vs integer"),
        "scatter",
    )

st.subheader("Where the error is introduced: local vs cumulative")
st.caption(
    "Cumulative: the integer model on its own integers (the error above). Local: each site's integer "
    "operation fed the float model's inputs, quantized as the integer model quantizes them, compared "
    "with the float operation on those same inputs: only the site's own rounding. Stars mark the "
    f"{TOP_SITES} sites whose own rounding is largest."
)
try:
    split = local_split(session, diff)
except InspectorError as exc:
    st.error(plain(exc))
    split = None
if split is not None:
    if split.window_start > 0:
        st.caption(
            f"Over the per-neuron window: tokens {split.window_start}–{len(diff.ids) - 1} (the sidebar's window setting)."
        )
    chart(local_cumulative_figure(split.sites, sites or None), "local_cumulative")
    st.dataframe(split.sites.sort("rank").head(10), hide_index=True, width="stretch")
    table_downloads(split.sites, "local_vs_cumulative")
    chart(local_tokens_figure(split.tokens, layer, site), "local_tokens")

st.subheader("A/B comparison")
st.caption(
    "A is the sidebar's QuantConfig. B: a saved QuantConfig (JSON, e.g. a sweep's winner), a traces "
    "directory of a saved run, or overrides such as `state_bits=16,act_bits=6`. Both integer models "
    "read the same tokens as above."
)
spec_b = st.text_input("Config B", "state_bits=16", key="ab_spec")
if st.button("Compare A and B", key="ab_button"):
    try:
        with st.spinner("Running both configurations…"):
            qc_b = quant_spec(spec_b, app_access(), lambda note: st.caption(plain(note)))
            st.session_state["ab_result"] = (session.run_key, spec_b, ab_compare(session.loaded, diff.ids, session.qc, qc_b))
    except InspectorError as exc:
        st.error(plain(exc))
stored = st.session_state.get("ab_result")
if stored is not None and stored[0] == session.run_key and stored[1] != spec_b:
    st.info("Config B changed since the last comparison: press **Compare A and B** to compare with it.")
elif stored is not None and stored[0] == session.run_key:  # never a comparison of an older Config B shown as current
    ab = stored[2]
    st.markdown(f"A vs B ({plain(stored[1])}) differ in: {plain(ab.changed_fields() or 'nothing')}")
    st.dataframe(ab.summary, hide_index=True, width="stretch")
    chart(ab_sites_figure(ab.sites), "ab_sites")
    chart(ab_tokens_figure(ab.tokens), "ab_tokens")
    with st.expander("Per-site SQNR and saturation, per-group activity"):
        st.dataframe(ab.sites, hide_index=True, width="stretch")
        st.dataframe(ab.activity, hide_index=True, width="stretch")
        table_downloads(ab.sites, "ab_sites")

st.subheader("Next-token distributions")
st.caption(
    "Bar t is the KL divergence (in nats) between the two models' distributions after reading token t, i.e. "
    "their predictions of token t + 1. Tokens are numbered from the start of the prompt."
)
chart(kl_agreement_figure(diff.tokens, analysis.prompt_tokens), "kl")
table_downloads(token_metrics_table(analysis), "token_metrics", TABLE_NOTES["token_metrics"])

st.subheader("Perplexity on a text of your choice")
text = st.text_area(
    "Text (both models are teacher-forced on it)", value=analysis.prompt + analysis.int_text, key="ppl_text", height=120
)
st.caption(f"At most the first {MAX_PERPLEXITY_TOKENS:,} tokens of the text are used.")
if st.button("Compute perplexity", key="ppl_button"):
    text_ids = perplexity_text_ids(session.loaded.tokenizer, text)
    ids = text_ids.ids
    if text_ids.truncated:
        st.warning(
            f"The text is {text_ids.total:,} tokens long; only its first {len(ids):,} tokens are used "
            f"(the limit is {MAX_PERPLEXITY_TOKENS:,})."
        )
    if len(ids) < 2:
        st.error("The text needs at least two tokens.")
    else:
        try:
            with st.spinner(f"Running both models on {len(ids)} tokens…"):
                result = compare(backend_for(session), ids, keep_from=len(ids) - 1)  # per-token figures only
        except InspectorError as exc:
            st.error(plain(exc))
        else:
            c1, c2, c3 = st.columns(3)
            st.caption(f"Both models teacher-forced on the same {len(ids):,} tokens ({len(ids) - 1:,} predictions).")
            c1.metric("Perplexity, float", f"{result.perplexity_float:.3f}")
            c2.metric("Perplexity, integer", f"{result.perplexity_int:.3f}")
            c3.metric("Top-1 agreement", f"{result.tokens['agree'].mean():.1%}")
