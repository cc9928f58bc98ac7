"""The published sizes' measured activity, cached on disk: measured once per configuration and QuantConfig.

Entries live in $LOIHI_INSPECTOR_CACHE (default ~/.cache/loihi-lm-inspector)/activity, one .npz of
per-neuron arrays and one .json of labels per measurement, keyed by the configuration, the
QuantConfig, the measurement settings and `code_version()` (a hash of the code that decides the
numbers, so a code change never serves stale activity).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from inspector.chip.mapper import NeuronGroup
from inspector.chip.published import (
    MEASURE_TOKENS,
    MeasuredActivity,
    MeasurementError,
    ProgressFn,
    code_version,
    measure_random,
)
from inspector.disk_cache import cache_dir
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.quant.config import QuantConfig


def measurement_key(config: HGRNBitConfig, qc: QuantConfig, tokens: int, calibration_tokens: int, seed: int) -> str:
    spec = {
        "config": config.to_dict(), "qc": asdict(qc), "tokens": tokens, "calibration_tokens": calibration_tokens,
        "seed": seed, "code": code_version(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _paths(name: str, key: str, directory: Path) -> tuple[Path, Path]:
    # names like "MMfreeLM-1.3B" contain a dot: append suffixes, never replace them
    folder, stem = directory / "activity", f"{name}-{key}"
    return folder / f"{stem}.npz", folder / f"{stem}.json"


def save_measurement(measured: MeasuredActivity, key: str, directory: Path) -> Path:
    npz, meta = _paths(measured.model, key, directory)
    npz.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, group in enumerate(measured.groups):
        messages, synops = measured.activity[(group.layer, group.name)]
        arrays[f"m{i}"], arrays[f"s{i}"], arrays[f"n{i}"] = messages, synops, group.synapses.astype(np.int32)
    tmp = npz.parent / (npz.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(npz)  # a half-written file never looks like a cache entry
    record = {"model": measured.model, "weights": measured.weights, "meta": measured.meta,
              "groups": [[g.layer, g.name, g.fan_in] for g in measured.groups]}
    meta.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return npz


def load_measurement(name: str, key: str, directory: Path) -> Optional[MeasuredActivity]:
    npz, meta = _paths(name, key, directory)
    if not (npz.exists() and meta.exists()):
        return None
    record = json.loads(meta.read_text(encoding="utf-8"))
    groups, activity = [], {}
    with np.load(npz) as arrays:
        for i, (layer, group_name, fan_in) in enumerate(record["groups"]):
            groups.append(NeuronGroup(layer, group_name, arrays[f"n{i}"].astype(np.int64), fan_in))
            activity[(layer, group_name)] = (arrays[f"m{i}"], arrays[f"s{i}"])
    return MeasuredActivity(record["model"], record["weights"], groups, activity, record["meta"])


def published_activity(
    name: str, qc: QuantConfig | None = None, directory: Path | None = None, measure: bool = True,
    on_progress: Optional[ProgressFn] = None, tokens: int = MEASURE_TOKENS, seed: int = 0,
) -> Optional[MeasuredActivity]:
    """The cached measurement of a published size; measured (and cached) first if `measure`, else None."""
    if name not in PUBLISHED_CONFIGS:
        raise MeasurementError(f"no published configuration {name!r}; choose one of {', '.join(PUBLISHED_CONFIGS)}")
    qc = qc or QuantConfig()
    directory = directory or cache_dir()
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    key = measurement_key(config, qc, tokens, qc.calibration_tokens, seed)
    cached = load_measurement(name, key, directory)
    if cached is not None or not measure:
        return cached
    measured = measure_random(name, config, qc, tokens, qc.calibration_tokens, seed, on_progress)
    save_measurement(measured, key, directory)
    return measured


def estimated_measure_seconds(config: HGRNBitConfig) -> int:
    """A duration hint for the UI, proportional to the weights: measured on one core of the development
    machine, 370M took 57 s and 1.3B 457 s, about 3 s per 10 M layer weights with 2048 calibration tokens."""
    per_layer = 4 * config.hidden_size * config.mixer_size + 3 * config.hidden_size * config.mlp_intermediate_size
    return math.ceil(config.num_hidden_layers * per_layer / 10e6 * 3)
