"""Command line: `python -m inspector run|diff|map ...` (no Streamlit needed).

    python -m inspector run  --model shakespeare --prompt "ROMEO:" --tokens 32 --out traces/romeo
    python -m inspector diff --model shakespeare --text sample_models/corpora/tinyshakespeare.txt
    python -m inspector map  --config MMfreeLM-370M --layout one-block-per-chip --lm-head host
    python -m inspector paper
    python -m inspector estimate --config MMfreeLM-370M --preset fitted --layout one-block-per-chip
    python -m inspector quality --model tinystories
    python -m inspector sweep --model shakespeare --out artifacts/sweeps/shakespeare
    python -m inspector ab    --model shakespeare --a default --b artifacts/sweeps/shakespeare/best_quant_config.json

Every user error (bad checkpoint, empty prompt, unknown QuantConfig key) is printed as one line
starting with `error:` and exits with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import polars as pl
import torch
from tqdm import tqdm

from inspector.backends.base import BACKEND_KEYS, REGISTRY, make_backend, require_backend
from inspector.backends.emulator import Emulator
from inspector.chip.mapper import LAYOUTS, LM_HEAD, ONE_BLOCK_PER_CHIP, PACKED, lm_head_group, map_groups, map_model
from inspector.chip.paper import LM_HEAD_CHIPS_PAPER
from inspector.compare.ab import ab_compare
from inspector.compare.analysis import keep_from_for
from inspector.compare.diff import compare, lockstep_sequence, sqnr_table
from inspector.compare.local_error import local_vs_cumulative
from inspector.compare.traces import start_tensor_write, write_traces
from inspector.errors import InspectorError
from inspector.lm.catalog import sample_models, validation_text
from inspector.lm.checkpoint import LoadedModel, ignored_keys_note, load_checkpoint
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.lm.generate import SamplingSettings, encode_prompt, eos_note, stopped_at_eos
from inspector.lm.paths import Access, Use, checked_path, read_limited
from inspector.lm.tokenizer import encode_document
from inspector.lm.train import bits_per_character
from inspector.quant.config import QUANT_PRESETS, QuantConfig, QuantConfigError
from inspector.quant.files import load_quant_config, parse_setting, quant_spec
from inspector.quant.precision import max_fan_in, precision_notes
from inspector.sweep.evaluate import SweepSpec, held_out_ids
from inspector.sweep.results import base_row, failed_points, sensitivity_table
from inspector.sweep.runner import RESULTS_FILE, load_results
from inspector.sweep.study import DEFAULT_BUDGET_PCT, WINNER_FILE, run_sweep


def resolve_model(name: str) -> LoadedModel:
    """A sample model name (e.g. `shakespeare`) or a checkpoint directory."""
    samples = sample_models()
    with tqdm(total=0, desc="loading tensors", unit="tensor", disable=None, leave=False) as bar:

        def on_progress(done: int, total: int, key: str) -> None:
            bar.total = total
            bar.update(done - bar.n)

        loaded = load_checkpoint(samples[name] if name in samples else name, on_progress=on_progress)
    if loaded.ignored_config_keys:
        print(f"note: {ignored_keys_note(loaded.ignored_config_keys)}", file=sys.stderr)
    return loaded


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def parse_overrides(pairs: list[str], quant_file: str | None = None, preset: str = "default") -> QuantConfig:
    """`key=value` pairs into a QuantConfig (ints, floats and true/false understood), applied on
    top of `quant_file` (a saved QuantConfig, e.g. a sweep's winner) or else the named preset
    (`QUANT_PRESETS`)."""
    base = load_quant_config(quant_file, note=_note) if quant_file else QuantConfig.preset(preset)
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise QuantConfigError(f"--quant expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        overrides[key.strip()] = parse_setting(key.strip(), raw)
    try:
        return base.with_overrides(overrides, _note)
    except (TypeError, ValueError) as exc:
        raise QuantConfigError(f"--quant: {exc}") from None


def _qc(args, loaded: LoadedModel) -> QuantConfig:
    """The command's QuantConfig; settings that will cost the model its accuracy are said on stderr."""
    qc = parse_overrides(args.quant, getattr(args, "quant_file", None), getattr(args, "quant_preset", "default"))
    _precision_notes(qc, loaded)
    return qc


def _precision_notes(qc: QuantConfig, loaded: LoadedModel, label: str = "") -> None:
    for text in precision_notes(qc, max_fan_in(loaded.config)):
        _note(label + text)


def _sampling(args) -> SamplingSettings:
    settings = SamplingSettings(args.tokens, args.temperature, args.top_k, args.seed, getattr(args, "ignore_eos", False))
    settings.validate()
    return settings


def cmd_run(args) -> int:
    require_backend(args.backend)  # before loading anything: say what is missing at once
    _out_dir(args.out)  # a bad --out is said now, not after the run
    loaded = resolve_model(args.model)
    qc = _qc(args, loaded)
    sampling = _sampling(args)
    encode_prompt(loaded.tokenizer, args.prompt)  # reject a bad prompt before the slow set-up
    if args.window is not None and args.window < 1:
        raise InspectorError(f"--window must be a positive number of tokens, got {args.window}")
    prompt_tokens = len(encode_prompt(loaded.tokenizer, args.prompt))
    keep_from = 0 if args.window is None else keep_from_for(args.window, prompt_tokens, sampling.max_new_tokens)
    backend = make_backend(args.backend, loaded, qc)
    for note in backend.calibration_notes:
        print(f"note: {note}", file=sys.stderr)
    print(backend.calibration_status, file=sys.stderr)
    try:
        run, stream = backend.generate(
            args.prompt, sampling, probes=True, record_tensors=not args.no_tensors, keep_from=keep_from,
        )
        for _ in tqdm(stream, total=sampling.max_new_tokens, desc=f"running on {args.backend}", unit="tok"):
            pass
    finally:
        backend.close()
    tensors_written = start_tensor_write(run, args.out)  # overlaps the comparison below and the other tables
    # Underflow needs the float model's values on the same tokens: one lockstep pass of the float
    # model, keeping no per-neuron data, against the run's own integers (its probe kept every token's
    # codes; identical to a second integer pass, which is not made: about a second at 370M).
    lockstep = compare(backend, run.all_ids, integer_probe=run.probe, keep_from=len(run.all_ids) - 1)
    text = "".join(t.text for t in run.tokens)
    metadata = {
        "model": str(loaded.directory),
        "prompt": args.prompt,
        "generated": text,
        "sampling": dataclasses.asdict(sampling),
        "backend": args.backend,
        "quant_config": qc.to_dict(),
        "hardware": dataclasses.asdict(backend.hardware),
        "core_map": backend.core_map.summary(),
        "keep_from": keep_from,
        "stopped_at_eos": stopped_at_eos(run.tokens),
    }
    out = write_traces(run, backend, args.out, metadata, underflow=lockstep.tensors, tensors_written=tensors_written)
    print(args.prompt + text)
    if note := eos_note(loaded.tokenizer, run.tokens, sampling.max_new_tokens):
        print(f"{note} (--ignore-eos goes on)", file=sys.stderr)
    print(f"traces written to {out}", file=sys.stderr)
    return 0


def cmd_diff(args) -> int:
    loaded = resolve_model(args.model)
    qc = _qc(args, loaded)
    emulator = Emulator(loaded, qc)
    if args.text:
        follow, prompt = "text", _read_text(args.text)
    else:
        follow, prompt = args.follow, args.prompt
    sampling = _sampling(args)
    ids, generated = lockstep_sequence(emulator, prompt, follow, sampling)
    if note := eos_note(loaded.tokenizer, generated, sampling.max_new_tokens):
        print(f"note: the {follow} model's {note}; the comparison covers the tokens up to it (--ignore-eos goes on)")
    if len(ids) > args.max_tokens:
        print(f"note: the sequence is {len(ids)} tokens; only the first {args.max_tokens} are compared (--max-tokens)")
        ids = ids[: args.max_tokens]
    result = compare(emulator, ids)
    pl.Config.set_tbl_rows(-1)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_float_precision(3)
    if args.local:
        split = local_vs_cumulative(emulator, ids, result)
        print(split.sites.sort("rank").select("rank", "layer", "site", "local_sqnr_db", "cumulative_sqnr_db", "introduces"))
    else:
        print(result.per_layer())
    print(sqnr_table(result))
    tok = result.tokens
    print(
        f"tokens {len(ids)}  top-1 agreement {tok['agree'].mean():.3f}  mean KL {tok['kl'].mean():.5f} nats  "
        "perplexity of both models on the same tokens "
        f"({'the text' if follow == 'text' else f'prompt + the {follow} model continuation'}): "
        f"float {result.perplexity_float:.3f}  integer {result.perplexity_int:.3f}"
    )
    return 0


def cmd_quality(args) -> int:
    """Float vs integer validation loss (bits/char) on a sample model's held-out split, and SQNR."""
    loaded = resolve_model(args.model)
    val_text = validation_text(loaded)
    ids = torch.tensor(encode_document(loaded.tokenizer, val_text))
    emulator = Emulator(loaded, _qc(args, loaded))
    float_bpc = bits_per_character(loaded.model, ids, len(val_text))
    int_bpc = bits_per_character(emulator.step_fn(None), ids, len(val_text))
    result = compare(emulator, ids[: args.max_tokens].tolist())
    pl.Config.set_tbl_rows(-1)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_float_precision(1)
    print(sqnr_table(result))
    print(
        f"{loaded.name}: validation {len(val_text)} chars, float {float_bpc:.4f} bits/char, integer {int_bpc:.4f} "
        f"bits/char ({100 * (int_bpc / float_bpc - 1):+.2f}%); top-1 agreement on {len(result.ids)} tokens "
        f"{result.tokens['agree'].mean():.3f}"
    )
    return 0


MAX_TEXT_BYTES = 256 * 2**20  # --text: a held-out text or a corpus, never a device read without end


def _read_text(path: str) -> str:
    """The file of --text: checked as any typed path is (`inspector.lm.paths`), then read up to MAX_TEXT_BYTES."""
    target = checked_path(path, Use("--text file", (), "file", MAX_TEXT_BYTES), Access.local())
    try:
        return read_limited(target, MAX_TEXT_BYTES, "--text file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InspectorError(f"cannot read --text {path}: not UTF-8 text ({exc.reason} at byte {exc.start:,})") from None


def _out_dir(path: str) -> Path:
    """--out checked before any work: a long name, a file in the way or an unwritable place is said at once.
    The CLI writes where its user says (an existing directory is written into, as the user asked)."""
    return checked_path(path, Use("--out directory", (), "output"), Access.local(), replace=True)


def cmd_sweep(args) -> int:
    """Sensitivity of every QuantConfig knob and a bit-width search, as Ray tasks, into --out."""
    loaded = resolve_model(args.model)
    _out_dir(args.out)
    text = _read_text(args.text) if args.text else validation_text(loaded)
    lower = dict(_pair(p) for p in args.lower)
    ids, chars = held_out_ids(loaded, text, args.max_tokens)
    spec = SweepSpec(loaded, ids, chars, _qc(args, loaded))
    if args.budget < 0:
        raise InspectorError("--budget must be >= 0 (percent of the float model's bits/char)")
    bars: list[tqdm] = []

    def on_phase(name: str, count: int) -> None:
        if bars:
            bars.pop().close()
        bars.append(tqdm(total=count, desc=name, unit="point"))

    def on_result(row: dict, done: int, total: int) -> None:
        bar = bars[-1]
        bar.n = done
        bar.set_postfix_str(("" if row.get("status") == "ok" else "FAILED ") + row["label"][:40])  # redraws

    try:
        outcome = run_sweep(
            spec, args.out, budget_pct=args.budget, search=not args.no_search, per_layer=not args.no_per_layer,
            lower=lower, address=args.ray_address, workers=args.workers, on_result=on_result, on_phase=on_phase,
        )
    finally:
        for bar in bars:
            bar.close()
    points = load_results(outcome.out_dir)
    pl.Config.set_tbl_rows(-1)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_float_precision(3)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_fmt_str_lengths(60)
    base = base_row(points)
    if base is not None:
        print(
            f"{loaded.name}: {len(ids)} held-out tokens, float {base['float_bits_per_char']:.4f} bits/char, base integer "
            f"{base['bits_per_char']:.4f} ({base['delta_bpc_pct']:+.2f}%), {base['cores']} cores, {base['chips']} chip(s), "
            f"{base['energy_per_token_uj']:.1f} uJ/token"
        )
    print(sensitivity_table(points).filter(pl.col("layer") == "all"))
    if outcome.search is not None:
        s = outcome.search
        changed = {k: v for k, v in s.winner.to_dict().items() if v != spec.base.to_dict()[k]}
        print(f"search (budget +{args.budget}% bits/char vs float): {len(s.steps)} steps; winner changes {changed or 'nothing'}"
              + (f" ({s.note})" if s.note else ""))
        print(f"winner: {outcome.out_dir / WINNER_FILE}")
    if outcome.failed:
        print(f"{outcome.failed} point(s) failed:")
        print(failed_points(points))
    print(f"results: {outcome.out_dir / RESULTS_FILE}", file=sys.stderr)
    return 0


def _pair(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise InspectorError(f"--lower expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), parse_setting(key.strip(), raw)


def cmd_ab(args) -> int:
    """Two QuantConfigs (or saved runs) side by side on the same text."""
    loaded = resolve_model(args.model)
    text = _read_text(args.text) if args.text else validation_text(loaded)
    ids = encode_document(loaded.tokenizer, text)[: args.max_tokens]
    if len(ids) < 2:
        raise InspectorError("the text needs at least two tokens")
    a, b = quant_spec(args.a, note=_note), quant_spec(args.b, note=_note)
    for label, qc in (("A: ", a), ("B: ", b)):
        _precision_notes(qc, loaded, label)
    result = ab_compare(loaded, ids, a, b)
    pl.Config.set_tbl_rows(-1)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_float_precision(4)
    print(f"A vs B differ in: {result.changed_fields() or 'nothing'}")
    print(result.summary)
    print(result.sites)
    return 0


def cmd_map(args) -> int:
    lm_head = args.lm_head == "chip"
    if args.config:
        if args.config not in PUBLISHED_CONFIGS:
            raise InspectorError(f"unknown --config {args.config!r}; choose from {', '.join(PUBLISHED_CONFIGS)}")
        config = HGRNBitConfig(**PUBLISHED_CONFIGS[args.config])
        core_map = map_model(config, layout=args.layout, lm_head_on_chip=lm_head)
    else:
        emulator = Emulator(resolve_model(args.model))
        groups = emulator.core_map.groups + ([lm_head_group(emulator.loaded.config)] if lm_head else [])
        core_map = map_groups(groups, emulator.hardware, layout=args.layout)
    summary = core_map.summary() | {"layout": args.layout, LM_HEAD: args.lm_head}
    if lm_head:
        summary["lm_head_chips"] = core_map.table.filter(pl.col("group") == LM_HEAD)["chip"].n_unique()
        if args.config == "MMfreeLM-370M":  # the paper's estimate is for this model
            summary["lm_head_chips_paper_estimate"] = LM_HEAD_CHIPS_PAPER
    print(json.dumps(summary, indent=2))
    note = core_map.oversized_blocks()
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _print_table(table: pl.DataFrame, title: str) -> None:
    pl.Config.set_tbl_rows(-1)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_tbl_width_chars(220)
    pl.Config.set_fmt_str_lengths(120)
    pl.Config.set_float_precision(4)
    print(f"\n{title}")
    print(table)


def cmd_paper(args) -> int:
    """The paper's figures as reported, the fitted preset's residuals, its constants and the held-out single chip."""
    from inspector.chip.costs import FITTED_NAME, preset
    from inspector.chip.fit import FitTable, fitted_preset_costs, single_chip_table
    from inspector.chip.fit import figures as fit_figures
    from inspector.chip.paper import measured_table, residual_table, statements_table

    table = FitTable.load()
    costs = fitted_preset_costs()
    _print_table(measured_table(), "The paper's 24-chip measurement of MMfreeLM-370M (as reported)")
    _print_table(statements_table(), "Its other statements (as reported)")
    _print_table(residual_table(fit_figures(table, costs)),
                 f"Preset '{FITTED_NAME}': paper measured | fitted estimate | residual "
                 f"({table.chips} chips, {table.steps_per_token} time steps per token, {table.crossings} crossings)")
    _print_table(preset(FITTED_NAME).table(), "Its constants, each with its source and the public figure to compare")
    _print_table(single_chip_table(table, costs), "Held out of the fit: the single-chip configuration (not tuned)")
    return 0


def _positive(value: str, field: str, kind=float):
    """A command-line number that must be positive and finite; the error names the field."""
    try:
        number = kind(value)
    except ValueError:
        raise InspectorError(f"{field} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number <= 0:
        raise InspectorError(f"{field} must be a positive finite number, got {value!r}")
    if number > 1e9:
        raise InspectorError(f"{field} = {value} is absurd")
    return number


def cmd_estimate(args) -> int:
    """A published size's (cached) measured activity or a model's run, estimated under a preset and a layout."""
    from inspector.chip.activity_cache import published_activity
    from inspector.chip.costs import FITTED_NAME, custom_preset, preset
    from inspector.chip.limits import HardwareConfig
    from inspector.chip.paper import estimate_figures, residual_table
    from inspector.chip.report import evaluate, export_names

    name = FITTED_NAME if args.preset == "fitted" else args.preset
    chosen = preset(name)
    prompt_tokens = int(_positive(args.prompt_tokens, "--prompt-tokens", int))
    if prompt_tokens > 1_000_000:
        raise InspectorError(f"--prompt-tokens {prompt_tokens:,} is absurd (at most 1,000,000)")
    costs = chosen.costs
    if args.static_w is not None:
        costs = dataclasses.replace(costs, static_w_per_chip=_positive(args.static_w, "--static-w"))
        chosen = custom_preset(costs, name)
    if args.config not in PUBLISHED_CONFIGS:
        raise InspectorError(f"unknown --config {args.config!r}; choose from {', '.join(PUBLISHED_CONFIGS)}")
    measured = published_activity(args.config, parse_overrides(args.quant), measure=args.measure)
    if measured is None:
        raise InspectorError(
            f"{args.config} has not been measured for this QuantConfig: run `python -m inspector measure --config "
            f"{args.config}` (or add --measure)"
        )
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[args.config])
    head = lm_head_group(config) if args.lm_head == "chip" else None
    result = evaluate(args.config, measured.weights, measured.groups, measured.activity, HardwareConfig(), False, costs,
                      prompt_tokens, args.layout, head)
    print(f"{args.config}: {measured.weights}; preset {chosen.name if args.static_w is None else name + ' (static power set)'}; "
          f"layout {args.layout}; LM head on the {args.lm_head}")
    _print_table(export_names(pl.DataFrame([result.row()])).transpose(include_header=True, column_names=["value"]), "Estimate")
    _print_table(result.estimate.summary(), "Both phases")
    if args.config == "MMfreeLM-370M":
        _print_table(residual_table(estimate_figures(result.estimate)), "Beside the paper's 24-chip measurement (as reported)")
    note = result.core_map.oversized_blocks()
    if note:
        print(f"note: {note}")
    return 0


def cmd_measure(args) -> int:
    """Fill the activity cache of published sizes (the Hardware page reads it), with a progress bar."""
    from inspector.chip.activity_cache import published_activity
    from inspector.disk_cache import cache_dir

    names = list(PUBLISHED_CONFIGS) if args.config == "all" else [args.config]
    if not set(names) <= set(PUBLISHED_CONFIGS):
        raise InspectorError(f"unknown --config {args.config!r}; choose from {', '.join(PUBLISHED_CONFIGS)} or all")
    qc = parse_overrides(args.quant)
    for name in names:
        bar = tqdm(total=1, desc=f"{name} (random weights, one layer at a time)", unit="layer")
        ran: list[int] = []

        def progress(done: int, total: int, what: str, bar: tqdm = bar, ran: list[int] = ran) -> None:
            ran.append(done)
            bar.total = total
            bar.n = done
            bar.set_postfix_str(what)
            bar.refresh()

        measured = published_activity(name, qc, on_progress=progress)
        bar.close()
        meta = measured.meta
        print(f"{name}: {measured.weights}; {measured.tokens} tokens measured; cached in {cache_dir()}; "
              f"measured in {meta['seconds']} s, peak RSS {meta['peak_rss_bytes'] / 2**30:.2f} GiB"
              + ("" if ran else " (was cached)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inspector", description="Loihi LM Inspector command line")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, tokens_default=32):
        p.add_argument("--model", default="shakespeare", help="sample model name or checkpoint directory")
        p.add_argument("--tokens", type=int, default=tokens_default, help="tokens to generate")
        p.add_argument("--temperature", type=float, default=0.8)
        p.add_argument("--top-k", type=int, default=40)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--ignore-eos", action="store_true",
            help="go on past the checkpoint's end-of-sequence token (by default generation stops there, as Hugging Face's does)",
        )
        p.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE", help="QuantConfig overrides")
        p.add_argument(
            "--quant-preset", default="default", choices=list(QUANT_PRESETS), help="QuantConfig preset the overrides apply to",
        )
        p.add_argument(
            "--quant-file",
            help="a saved QuantConfig (JSON, e.g. a sweep's winner) or a traces directory; --quant applies on top",
        )

    run = sub.add_parser("run", help="generate with the integer model on a backend and write Parquet traces")
    common(run)
    run.add_argument("--prompt", required=True)
    run.add_argument("--out", required=True, help="directory for the Parquet traces")
    run.add_argument("--no-tensors", action="store_true", help="skip the (large) per-site tensor table")
    run.add_argument(
        "--window", type=int, default=None, metavar="N",
        help="keep per-neuron tables (tensors, states, saturated_neurons) for the last N tokens only (default: every token)",
    )
    run.add_argument(
        "--backend", choices=BACKEND_KEYS, default="emulator",
        help="where the integer model runs: " + "; ".join(f"{e.key}: {e.label}" for e in REGISTRY),
    )
    run.set_defaults(func=cmd_run)

    diff = sub.add_parser("diff", help="float vs integer model, per layer and per token")
    common(diff)
    diff.add_argument("--text", help="teacher-force both models on this text file")
    diff.add_argument("--prompt", default="The ", help="prompt to continue when not using --text")
    diff.add_argument("--follow", choices=["float", "integer", "text"], default="float", help="whose generation to follow")
    diff.add_argument("--max-tokens", type=int, default=512)
    diff.add_argument("--local", action="store_true", help="per site: local error (its own rounding) vs cumulative error")
    diff.set_defaults(func=cmd_diff)

    quality = sub.add_parser("quality", help="float vs integer validation loss of a sample model, and per-layer SQNR")
    quality.add_argument("--model", default="shakespeare")
    quality.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE")
    quality.add_argument("--quant-preset", default="default", choices=list(QUANT_PRESETS))
    quality.add_argument("--quant-file", help="a saved QuantConfig (JSON, e.g. a sweep's winner) or a traces directory")
    quality.add_argument("--max-tokens", type=int, default=512, help="tokens for the SQNR table")
    quality.set_defaults(func=cmd_quality)

    sweep = sub.add_parser("sweep", help="per-knob sensitivity and bit-width search, as Ray tasks, into Parquet")
    sweep.add_argument("--model", default="shakespeare")
    sweep.add_argument("--text", help="held-out text file (default: a sample model's validation split)")
    sweep.add_argument("--out", required=True, help="directory for points.parquet, the winner and metadata (a re-run resumes)")
    sweep.add_argument(
        "--budget", type=float, default=DEFAULT_BUDGET_PCT, help="search: allowed bits/char loss, percent of the float model's",
    )
    sweep.add_argument("--max-tokens", type=int, default=512, help="held-out tokens each point reads")
    sweep.add_argument("--ray-address", help="an existing Ray cluster (default: RAY_ADDRESS, else a local instance)")
    sweep.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all)")
    sweep.add_argument("--no-search", action="store_true", help="sensitivity only")
    sweep.add_argument("--no-per-layer", action="store_true", help="skip the per-layer points")
    sweep.add_argument(
        "--lower", nargs="*", default=[], metavar="KEY=VALUE", help="lower settings to try instead of the defaults",
    )
    sweep.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE", help="base QuantConfig overrides")
    sweep.add_argument("--quant-file", help="base QuantConfig file")
    sweep.set_defaults(func=cmd_sweep)

    ab = sub.add_parser("ab", help="two QuantConfigs (or saved runs) side by side on the same text")
    ab.add_argument("--model", default="shakespeare")
    ab.add_argument("--text", help="text file (default: a sample model's validation split)")
    ab.add_argument(
        "--a", default="default", help="'default', a QuantConfig JSON file, a traces directory, or key=value,key=value",
    )
    ab.add_argument("--b", required=True, help="as --a")
    ab.add_argument("--max-tokens", type=int, default=512)
    ab.set_defaults(func=cmd_ab)

    mapper = sub.add_parser("map", help="core map summary of a model or a published configuration")
    mapper.add_argument("--model", default="shakespeare")
    mapper.add_argument("--config", help=f"one of {', '.join(PUBLISHED_CONFIGS)}")
    mapper.add_argument("--layout", choices=list(LAYOUTS), default=PACKED,
                        help="packed: fill each chip; one-block-per-chip: as the paper deployed 370M on 24 chips")
    mapper.add_argument("--lm-head", choices=["host", "chip"], default="host",
                        help="the LM head on the host (as measured) or on chip")
    mapper.set_defaults(func=cmd_map)

    paper = sub.add_parser("paper", help="the paper's measured Loihi 2 figures, the fitted preset's residuals and constants")
    paper.set_defaults(func=cmd_paper)

    est = sub.add_parser("estimate", help="time and energy per token of a published size under a cost preset and a layout")
    est.add_argument("--config", default="MMfreeLM-370M", help=f"one of {', '.join(PUBLISHED_CONFIGS)}")
    est.add_argument("--preset", default="fitted", help="'fitted' (the preset fitted to the paper) or a preset's name")
    est.add_argument("--layout", choices=list(LAYOUTS), default=ONE_BLOCK_PER_CHIP)
    est.add_argument("--lm-head", choices=["host", "chip"], default="host")
    est.add_argument("--prompt-tokens", default="500", help="prompt length for the time to first token")
    est.add_argument("--static-w", default=None, help="static power per chip (W), replacing the preset's")
    est.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE", help="QuantConfig overrides of the measurement")
    est.add_argument("--measure", action="store_true", help="measure the published size first if it is not cached")
    est.set_defaults(func=cmd_estimate)

    measure = sub.add_parser("measure", help="measure (once, cached) the activity of a published size with random weights")
    measure.add_argument("--config", default="MMfreeLM-370M", help=f"one of {', '.join(PUBLISHED_CONFIGS)}, or all")
    measure.add_argument("--quant", nargs="*", default=[], metavar="KEY=VALUE", help="QuantConfig overrides")
    measure.set_defaults(func=cmd_measure)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the last net: a file-system refusal is said in one line, never as a traceback
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
