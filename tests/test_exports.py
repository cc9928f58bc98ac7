"""Exports, perplexities and URL settings as plain functions (issue 11, points 5-10, 16 and the tour)."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile

import polars as pl
import pytest
import torch

from inspector.backends.emulator import Emulator
from inspector.compare.analysis import analyze
from inspector.compare.perplexity import MAX_PERPLEXITY_TOKENS, own_continuation_perplexity, perplexity_text_ids
from inspector.errors import PromptError
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import MAX_SEED, SamplingSettings
from inspector.quant.config import QuantConfig
from inspector.ui.url_settings import QUANT_SLIDERS, fields, parse_query, to_query
from inspector.views import exports as E
from inspector.views import figures as F
from inspector.views.teaching import host_share, layer_op_counts

PROMPT = "To be, or not"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    from inspector.lm.checkpoint import save_checkpoint
    from inspector.lm.model import HGRNBitForCausalLM
    from tests.conftest import randomize, tiny_config

    model = randomize(HGRNBitForCausalLM(tiny_config(vocab_size=tiny_tokenizer.get_vocab_size())))
    return load_checkpoint(save_checkpoint(model, tiny_tokenizer, tmp_path_factory.mktemp("exp") / "tiny"))


@pytest.fixture(scope="module")
def run(checkpoint):
    emulator = Emulator(checkpoint)
    analysis = analyze(emulator, PROMPT, SamplingSettings(6, 0.9, 20, 3))
    metadata = E.run_metadata(analysis, model="tiny", directory="/x/tiny", parameters=123, qc=emulator.qc, backend="emulator")
    return emulator, analysis, metadata


def test_figure_html_is_self_contained(run):
    """Point 5: opens offline. plotly.js is inside the page; no script is fetched from anywhere."""
    _, analysis, metadata = run
    page = E.figures_html({"KL": F.kl_agreement_figure(analysis.diff.tokens, analysis.prompt_tokens)}, metadata)
    assert not re.search(r"<script[^>]+src=", page)
    import plotly.offline

    outside_library = page.replace(plotly.offline.get_plotlyjs(), "")
    assert "cdn." not in outside_library and "https://" not in outside_library.replace("https://plotly.com", "")
    assert len(page) > 1_000_000 and "Plotly.newPlot" in page  # the library itself, then the figure
    assert PROMPT in page and "&quot;seed&quot;: 3" in page  # the run metadata travels with it (escaped)


def test_one_join_key_across_tables(run):
    """Point 7: `token` counts from the start of the prompt in every table."""
    emulator, analysis, _ = run
    tables = E.export_tables(analysis, emulator.loaded.tokenizer)
    n, total = analysis.prompt_tokens, len(analysis.run.all_ids)
    assert tables["tokens"]["token"].to_list() == list(range(total))
    assert tables["token_metrics"]["token"].to_list() == list(range(total))
    assert sorted(tables["activity"]["token"].unique().to_list()) == list(range(total))
    assert sorted(tables["saturation"]["token"].unique().to_list()) == list(range(total))
    assert sorted(tables["tensor_error"]["token"].unique().to_list()) == list(range(total))
    assert tables["generation"]["token"].to_list() == list(range(n, total))
    # a generated token's id and text are the same in `generation` and `tokens` when joined on `token`
    joined = tables["generation"].join(tables["tokens"], on="token", suffix="_tokens")
    assert joined["token_id"].to_list() == joined["token_id_tokens"].to_list()
    assert joined["piece"].to_list() == joined["piece_tokens"].to_list()
    assert not joined["is_prompt"].any() and tables["tokens"]["is_prompt"].sum() == n


def test_token_metrics_row_t_predicts_t_plus_1(run):
    emulator, analysis, _ = run
    metrics = E.token_metrics_table(analysis)
    ids = analysis.run.all_ids
    assert metrics["predicts_token"].to_list() == [*range(1, len(ids)), None]
    assert metrics["next_token_id"].to_list() == [*ids[1:], None]
    # nll of row t is the NLL of token t + 1 under the integer model
    t = analysis.prompt_tokens - 1
    logp = torch.log_softmax(analysis.diff.logits_at(t)[1].double(), -1)  # (float, integer) logits of row t
    assert metrics["nll_int_nats"][t] == pytest.approx(-float(logp[ids[t + 1]]))
    # and generation's kl_nats is token_metrics' kl_nats of the row before it
    generation = E.generation_table(analysis, emulator.loaded.tokenizer)
    assert generation["kl_nats"][0] == pytest.approx(metrics["kl_nats"][t])


def test_columns_have_no_spaces_and_are_all_documented(run):
    emulator, analysis, _ = run
    tables = E.export_tables(analysis, emulator.loaded.tokenizer)
    dictionary = E.column_dictionary(tables)
    assert dictionary.height == sum(len(t.columns) for t in tables.values())
    undocumented = dictionary.filter(pl.col("description") == "")
    assert undocumented.height == 0, undocumented.select("table", "column").rows()
    assert not any(" " in c for t in tables.values() for c in t.columns)
    assert dictionary.filter(pl.col("column") == "kl_nats")["unit"].to_list()[0] == "nats"
    with pytest.raises(ValueError, match="spaces"):
        E.check_columns(pl.DataFrame({"KL vs float": [1.0]}))


def test_decoded_text_beside_raw_pieces(run):
    emulator, analysis, _ = run
    tokens = E.export_tables(analysis, emulator.loaded.tokenizer)["tokens"]
    space = tokens.filter(pl.col("text").str.starts_with(" "))
    assert space.height and all(p.startswith("Ġ") for p in space["piece"].to_list())  # byte-level BPE


def test_csv_and_parquet_carry_the_run_metadata(run):
    emulator, analysis, metadata = run
    table = E.export_tables(analysis, emulator.loaded.tokenizer)["generation"]
    raw = E.csv_bytes(table, metadata, "a note")
    header = [line for line in raw.decode().splitlines() if line.startswith("#")]
    assert any('"seed": 3' in line for line in header) and any("quant_config" in line for line in header)
    back = pl.read_csv(io.BytesIO(raw), comment_prefix="#")
    assert back.columns == table.columns and back.height == table.height
    skip = int(re.search(r"skiprows=(\d+)", header[-1]).group(1))
    assert raw.decode().splitlines()[skip].startswith("token,")  # the pandas recipe points at the header
    pq = E.parquet_bytes(table, metadata)
    stored = json.loads(pl.read_parquet_metadata(io.BytesIO(pq))[E.PARQUET_METADATA_KEY])
    assert stored["prompt"] == PROMPT and stored["quant_config"]["state_bits"] == 24
    assert pl.read_parquet(io.BytesIO(pq)).equals(table)


def test_bundle_has_everything(run):
    emulator, analysis, metadata = run
    z = zipfile.ZipFile(io.BytesIO(E.bundle_zip(analysis, emulator.loaded.tokenizer, metadata)))
    names = set(z.namelist())
    assert {"run.json", "columns.csv", "figures.html", "README.txt"} <= names
    tables = E.export_tables(analysis, emulator.loaded.tokenizer)
    for name in tables:
        assert f"tables/{name}.parquet" in names
        assert (f"tables/{name}.csv" in names) == (name not in E.BIG_TABLES)
    assert json.loads(z.read("run.json"))["sampling"]["seed"] == 3
    columns = pl.read_csv(io.BytesIO(z.read("columns.csv")))
    assert set(columns["table"].unique().to_list()) == set(tables)
    page = z.read("figures.html").decode()
    assert not re.search(r"<script[^>]+src=", page) and page.count("Plotly.newPlot") == len(
        E.bundle_figures(analysis, emulator.loaded.tokenizer),
    )
    assert "predicts_token" in z.read("README.txt").decode()


def test_perplexity_of_each_model_on_its_own_text(run, checkpoint):
    """Point 6: the float model's own perplexity does not move with the QuantConfig."""
    _, analysis, _ = run
    ppl = analysis.perplexities
    logp = [torch.log_softmax(t.logits.double(), -1)[t.token_id] for t in analysis.float_tokens]
    assert ppl.float_own == pytest.approx(float(torch.exp(-torch.stack(logp).mean())))
    assert ppl.int_own == pytest.approx(ppl.int_on_int_text, rel=1e-9)  # same logits, bit-exact
    assert ppl.float_tokens == ppl.int_tokens == 6
    coarse = analyze(Emulator(checkpoint, QuantConfig(state_bits=6, internal_bits=6)), PROMPT, SamplingSettings(6, 0.9, 20, 3))
    assert coarse.perplexities.float_own == ppl.float_own
    assert math.isnan(own_continuation_perplexity([]))  # no continuation: not a number, never 0 or 1


def test_perplexity_text_is_cut_and_says_so(tiny_tokenizer):
    short = perplexity_text_ids(tiny_tokenizer, "To be, or not to be")
    assert not short.truncated and short.total == len(short.ids)
    long = perplexity_text_ids(tiny_tokenizer, "To be, or not to be. " * 400)
    assert long.truncated and len(long.ids) == MAX_PERPLEXITY_TOKENS and long.total > MAX_PERPLEXITY_TOKENS


def test_sampling_settings_refuse_out_of_range_numbers():
    with pytest.raises(PromptError, match="seed"):
        SamplingSettings(seed=99_999_999_999).validate()
    with pytest.raises(PromptError, match="top-k"):
        SamplingSettings(top_k=99_999).validate(vocab_size=300)
    SamplingSettings(top_k=300, seed=MAX_SEED).validate(vocab_size=300)


def test_layer_error_sites_and_colors(run):
    """Point 9: no sites draws nothing; sixteen sites get sixteen colors."""
    _, analysis, _ = run
    tensors = analysis.diff.tensors
    assert len(F.layer_error_figure(tensors, sites=[]).data) == 0
    sites = tensors.filter(pl.col("layer") >= 0)["site"].unique(maintain_order=True).to_list()
    assert len(sites) >= 11
    fig = F.layer_error_figure(tensors, sites=sites)
    colors = [t.line.color for t in fig.data]
    assert len(colors) == len(sites) and len(set(colors)) == len(colors)
    assert len({F.series_color(i) for i in range(len(F.SERIES_COLORS))}) == len(F.SERIES_COLORS)


def test_colored_tokens_are_numbered_from_the_prompt():
    page = F.colored_tokens_html(["a", "b"], [True, True], [0.0, 0.0], selected=8, first_token=7)
    assert 'title="token 7:' in page and 'title="token 8:' in page and page.count("outline") == 1


SPEC = fields(("shakespeare", "local"), ("emulator", "lava"))


def test_url_settings_round_trip():
    values = {"model_choice": "local", "checkpoint_dir": "/m", "seed": 9, "temperature": 0.25, "q_state_bits": 12, "q_pow2": True}
    query = to_query(values, SPEC, {"seed": 0})
    assert query == {"model": "local", "path": "/m", "seed": "9", "temperature": "0.25", "state_bits": "12", "pow2": "1"}
    parsed, problems = parse_query(query, SPEC)
    assert parsed == values and problems == []
    assert "seed" not in to_query({"seed": 0}, SPEC, {"seed": 0})  # defaults stay out of the link
    assert "prompt" not in to_query({"prompt": "x" * 10_000}, SPEC)  # too long for a link


@pytest.mark.parametrize(
    "param,raw",
    [("tokens", "0"), ("tokens", "1e9"), ("seed", "-1"), ("seed", str(MAX_SEED + 1)), ("temperature", "inf"),
     ("temperature", "nan"), ("model", "../../etc"), ("backend", "loihi2"), ("headroom", "3"), ("pow2", "yes please"),
     ("prompt", "a\x00b"), ("path", "p" * 5000), ("state_bits", "25"), ("top_k", "ten"), ("preset", "evil"),
     ("scale_rule", "x"), ("window", "65"), ("window", "-1")],
)
def test_url_settings_refuse_hostile_values(param, raw):
    parsed, problems = parse_query({param: raw}, SPEC)
    assert parsed == {} and len(problems) == 1 and f"{param} from the link" in problems[0]


def test_url_settings_carry_preset_scale_rule_and_window():
    values = {"q_preset": "paper-study", "q_scale_rule": "study", "window": 64}
    query = to_query(values, SPEC)
    assert query == {"preset": "paper-study", "scale_rule": "study", "window": "64"}
    parsed, problems = parse_query(query, SPEC)
    assert parsed == values and problems == []
    assert parse_query({"window": "generated"}, SPEC)[0] == {"window": "generated"}


def test_url_quant_ranges_match_quant_config():
    for name, (_, lo, hi) in QUANT_SLIDERS.items():
        assert lo <= getattr(QuantConfig(), name) <= hi


def test_tour_op_counts_and_host_share(run):
    emulator, _, _ = run
    ops = layer_op_counts(emulator)
    L = emulator.params.layers[0]
    assert ops["synapse_additions"] == sum(
        int((p.weight != 0).sum()) for p in (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)
    )
    assert 0 < ops["requantize_multiplies"] < ops["synapse_additions"]
    cfg = emulator.loaded.config
    share = host_share(emulator)
    assert share["lm_head_weights"] == cfg.vocab_size * cfg.hidden_size
    assert share["lm_head_in_layers"] == pytest.approx(share["lm_head_weights"] / ops["synapse_additions"])


def test_bundle_readme_lists_exactly_the_tables_in_the_zip(run):
    """Issue 22.7: the README named tensors.parquet, which the zip lacked."""
    emulator, analysis, metadata = run
    z = zipfile.ZipFile(io.BytesIO(E.bundle_zip(analysis, emulator.loaded.tokenizer, metadata)))
    in_zip = {n.removeprefix("tables/").removesuffix(".parquet") for n in z.namelist() if n.endswith(".parquet")}
    readme = z.read("README.txt").decode()
    listed = {line.split()[0] for line in readme.split("Join key")[1].splitlines()[3:] if line.strip()}
    assert listed == in_zip and "tensors" in in_zip
    tensors = pl.read_parquet(io.BytesIO(z.read("tables/tensors.parquet")))
    assert tensors.height > 0 and "tables/tensors.csv" not in z.namelist()
    assert "tensors as Parquet only" in readme


HOSTILE_PROMPT = "## X [y](http://z) <b>bold</b>"


def test_exports_carry_a_hostile_prompt_as_text(checkpoint):
    """Issue 22.2: the prompt reaches every export as the characters typed, never as markup."""
    emulator = Emulator(checkpoint)
    analysis = analyze(emulator, HOSTILE_PROMPT, SamplingSettings(3, 0.0, 0, 0))
    metadata = E.run_metadata(analysis, model="tiny", directory="/x/tiny", parameters=1, qc=emulator.qc, backend="emulator")
    z = zipfile.ZipFile(io.BytesIO(E.bundle_zip(analysis, emulator.loaded.tokenizer, metadata)))
    assert json.loads(z.read("run.json"))["prompt"] == HOSTILE_PROMPT
    page = z.read("figures.html").decode()
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page  # escaped inside <pre>
    assert 'href="http://z"' not in page
    assert HOSTILE_PROMPT not in z.read("README.txt").decode()
    csv = z.read("tables/generation.csv").decode()
    assert all(line.startswith("#") for line in csv.splitlines()[:2])  # the prompt stays inside the comment lines


def test_colored_tokens_escape_model_text():
    html = F.colored_tokens_html(["<a href='http://z'>x</a>", "## h"], [True, False], [0.0, 1.0])
    assert "<a href" not in html and "&lt;a href=" in html


def test_url_refuses_a_repeated_parameter_and_a_seed_in_e_notation():
    """Issue 22.7: `?seed=1&seed=99` took 99 silently, `1e30` ran seed 1."""
    from inspector.ui.url_settings import query_values, whole_number

    spec = fields(("shakespeare",), ("emulator",))
    values, problems = parse_query(query_values({"seed": ["1", "99"], "tokens": ["5"]}), spec)
    assert values == {"max_new_tokens": 5} and "seed appears more than once" in problems[0]
    values, problems = parse_query({"seed": "1e30"}, spec)
    assert values == {} and "'1e30' is not a whole number" in problems[0] and "seed from the link" in problems[0]
    for bad in ("1e30", "1.0", "0x10", "", " ", "١٢"):
        with pytest.raises(ValueError, match="not a whole number"):
            whole_number(bad, 0, MAX_SEED)
    assert whole_number(" 42 ", 0, MAX_SEED) == 42


def test_one_set_of_quant_limits_for_sliders_url_and_specs():
    """Issue 22.7: the A/B box took state_bits=2 while the sidebar stopped at 6: now every input uses QuantConfig.limits."""
    from inspector.quant.config import QuantConfigError
    from inspector.quant.files import quant_spec

    limits = QuantConfig().limits()
    spec = {f.param: f for f in fields(("shakespeare",), ("emulator",))}
    for name, (_, lo, hi) in QUANT_SLIDERS.items():
        assert (lo, hi) == limits[name]
        assert quant_spec(f"{name}={lo}") == QuantConfig().with_overrides({name: lo})  # the A/B box accepts the slider's ends
        assert spec[name].parse(str(hi)) == hi
        with pytest.raises(QuantConfigError, match=f"{name}={lo - 1} is outside {lo}..{hi}"):
            quant_spec(f"{name}={lo - 1}")
        with pytest.raises(ValueError):
            spec[name].parse(str(hi + 1))
