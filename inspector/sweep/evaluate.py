"""One sweep point: a QuantConfig (for all layers or one), evaluated teacher-forced on a held-out text.

The integer model reads the whole text at once (the sequence path; it gives the same bits as token
by token, tested), with a probe that counts activity but records no tensors. From one run:
validation bits/char, mean next-token KL from the float model, top-1 agreement, the share of
clipped values, and the chip cost: cores and chips of the core map, energy per token from the
estimator, messages and synaptic ops per token (which the messaging mode moves). Nothing here knows
about Ray; `inspector.sweep.runner` ships these calls to workers.

Chip cost depends on the widths through the neuron state: `HardwareConfig.bytes_per_neuron` assumes
four 24-bit state variables per fused neuron; a point with `state_bits` = b is mapped with four
b-bit variables (rounded up to bytes), so narrower states pack more neurons per core.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import torch

from inspector import schema as S
from inspector.chip.estimate import estimate
from inspector.chip.limits import HardwareConfig
from inspector.chip.mapper import CoreMap, map_model
from inspector.chip.probes import RecordingProbe
from inspector.errors import InspectorError
from inspector.lm.checkpoint import LoadedModel
from inspector.lm.tokenizer import encode_document
from inspector.quant.calibrate import calibrate_for, default_calibration_text
from inspector.quant.config import QuantConfig
from inspector.quant.convert import IntegerParams, convert
from inspector.quant.integer_model import IntegerLM
from inspector.quant.messaging import MESSAGING_FIELDS
from inspector.quant.messaging import describe as describe_messaging
from inspector.schema import PROJECTIONS


class SweepError(InspectorError):
    """A sweep that cannot run as asked (bad text, bad directory, a point that makes no sense)."""


@dataclass(frozen=True)
class Point:
    """A QuantConfig to evaluate; `layer` set: only that layer uses it, the others use the base."""

    kind: str  # "base", "lower", "raise", "search"
    knob: str  # the QuantConfig field changed ("" for the base)
    value: Any  # the value it was set to, of the field's type (None for the base)
    quant_config: str  # JSON of every QuantConfig field
    layer: int = -1  # -1: all layers

    @property
    def setting(self) -> str:
        """The value as text: the results table's `setting` column holds every knob's values in one column."""
        return "" if not self.knob else str(self.value)

    @property
    def point_id(self) -> str:
        """Same QuantConfig and layer, same id: a re-run (or the search) reuses an earlier result."""
        return hashlib.sha1(f"{self.quant_config}|{self.layer}".encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        if self.kind == "base":
            return "base"
        where = f" @ layer {self.layer}" if self.layer >= 0 else ""
        return f"{self.knob}={self.setting}{where}"

    def qc(self) -> QuantConfig:
        return QuantConfig().with_overrides(json.loads(self.quant_config))


@dataclass
class SweepSpec:
    """What every point of one sweep shares: the model, the held-out tokens and the base config."""

    loaded: LoadedModel
    ids: list[int]
    num_chars: int  # characters of the held-out text (bits/char divides by these)
    base: QuantConfig
    calibration_text: Optional[str] = None
    hardware: HardwareConfig = dataclasses.field(default_factory=HardwareConfig)

    @property
    def key(self) -> str:
        blob = json.dumps([str(self.loaded.directory), self.ids, self.num_chars, self.base.to_dict(), self.calibration_text])
        return hashlib.sha1(blob.encode()).hexdigest()


def hardware_for(qc: QuantConfig, hardware: HardwareConfig) -> HardwareConfig:
    """The core limits with the neuron state sized by `state_bits` (four state variables)."""
    return hardware.with_overrides({"bytes_per_neuron": max(1, -(-4 * qc.state_bits // 8))})


class LayerwiseIntegerLM(IntegerLM):
    """The integer model with some layers converted under another QuantConfig (per-layer points)."""

    def __init__(self, base: IntegerParams, layer_params: dict[int, IntegerParams], float_model):
        for idx, params in layer_params.items():
            mine, theirs = params.layers[idx].scales, base.layers[idx].scales
            if mine["input"] != theirs["input"] or mine[S.RESIDUAL_MLP] != theirs[S.RESIDUAL_MLP]:
                raise SweepError(
                    f"layer {idx}: this setting changes the scale the layers hand to each other, "
                    "so it cannot differ from one layer to the next"
                )
        layers = [layer_params[i].layers[i] if i in layer_params else layer for i, layer in enumerate(base.layers)]
        super().__init__(dataclasses.replace(base, layers=layers), float_model)
        self._layer_qc = {i: p.qc for i, p in layer_params.items()}

    def block(self, idx, x, h, probe=None, senders=None):
        base = self.qc
        self.qc = self._layer_qc.get(idx, base)
        try:
            return super().block(idx, x, h, probe, senders)
        finally:
            self.qc = base


class Evaluator:
    """Per-process cache of what every point of a sweep reuses: float logits, calibrations, core maps."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        model = spec.loaded.model.eval()
        self.ids = torch.tensor([spec.ids])
        if self.ids.shape[1] < 2:
            raise SweepError("the held-out text needs at least two tokens")
        with torch.no_grad():
            logits, _ = model(self.ids)
        self.float_logp = torch.log_softmax(logits[0].double(), -1)
        self.float_bpc = self._bpc(self.float_logp)
        self._calibrations: dict[int, dict[str, float]] = {}
        self._params: dict[str, IntegerParams] = {}
        self._maps: dict[int, CoreMap] = {}

    def _bpc(self, logp: torch.Tensor) -> float:
        nll = -logp[:-1].gather(1, self.ids[0, 1:, None])[:, 0].sum()
        return float(nll) / math.log(2) / max(self.spec.num_chars, 1)

    def calibration(self, tokens: int) -> dict[str, float]:
        """The maxima calibrated over `tokens` tokens, through the on-disk cache as the CLI and the app
        do (`calibrate_for`; the key holds only the fields calibration reads): a sweep of a model opened
        before does not calibrate again, and gets the same bits."""
        if tokens not in self._calibrations:
            text = self.spec.calibration_text if self.spec.calibration_text is not None else default_calibration_text()
            qc = self.spec.base.with_overrides({"calibration_tokens": tokens})
            self._calibrations[tokens], _ = calibrate_for(self.spec.loaded, qc, text)
        return self._calibrations[tokens]

    def params(self, qc: QuantConfig) -> IntegerParams:
        """Converted parameters, cached by every field but the messaging ones: messaging changes what
        neurons send, not one weight, scale or table, so a threshold search converts once."""
        key = json.dumps({k: v for k, v in qc.to_dict().items() if k not in MESSAGING_FIELDS}, sort_keys=True)
        if key not in self._params:
            if len(self._params) > 8:
                self._params.pop(next(iter(self._params)))
            self._params[key] = convert(self.spec.loaded.model, self.calibration(qc.calibration_tokens), qc)
        params = self._params[key]
        return params if params.qc == qc else dataclasses.replace(params, qc=qc)

    def core_map(self, qc: QuantConfig, params: IntegerParams) -> CoreMap:
        hw = hardware_for(qc, self.spec.hardware)
        if qc.state_bits not in self._maps:
            weights = [{name: getattr(layer, name).weight for name in PROJECTIONS} for layer in params.layers]
            self._maps[qc.state_bits] = map_model(self.spec.loaded.config, hw, weights)
        return self._maps[qc.state_bits]

    @torch.no_grad()
    def evaluate(self, point: Point) -> dict[str, Any]:
        """The point's metrics; never raises: a failure is returned as a row with its error."""
        start, started_at, cpu_start = time.perf_counter(), time.time(), time.process_time()
        row: dict[str, Any] = {
            "point_id": point.point_id, "kind": point.kind, "knob": point.knob, "setting": point.setting,
            "layer": point.layer, "label": point.label, "quant_config": point.quant_config,
            "float_bits_per_char": self.float_bpc, "pid": os.getpid(),
        }
        try:
            qc = point.qc()
            model = self.spec.loaded.model
            if point.layer >= 0:
                if point.layer >= len(model.model.layers):
                    raise SweepError(f"layer {point.layer} does not exist")
                integer = LayerwiseIntegerLM(self.params(self.spec.base), {point.layer: self.params(qc)}, model)
            else:
                integer = IntegerLM(self.params(qc), model)
            core_map = self.core_map(qc, integer.params)
            probe = RecordingProbe(core_map, record_tensors=False)
            logits, _ = integer(self.ids, None, probe)
            logp = torch.log_softmax(logits[0].double(), -1)
            bpc = self._bpc(logp)
            kl = (self.float_logp.exp() * (self.float_logp - logp)).sum(-1)
            clipped = values = 0
            for record in probe.sites.values():
                for mask in record.clipped:
                    clipped += int(mask.sum())
                    values += mask.numel()
            activity = probe.activity()
            cost = estimate(activity, core_map.chips)
            tokens = max(activity["token"].n_unique(), 1)
            row.update(
                status="ok", error="", bits_per_char=bpc, delta_bpc_pct=100 * (bpc / self.float_bpc - 1),
                mean_kl=float(kl.mean()), top1_agreement=float((logp.argmax(-1) == self.float_logp.argmax(-1)).double().mean()),
                clipped_fraction=clipped / max(values, 1), cores=core_map.cores, chips=core_map.chips,
                energy_per_token_uj=cost.energy_per_token_mj * 1e3, latency_per_token_us=cost.latency_per_token_ms * 1e3,
                messages_per_token=float(activity["messages"].sum()) / tokens,
                synops_per_token=float(activity["synops"].sum()) / tokens, messaging=describe_messaging(qc),
            )
        except Exception as exc:  # a failed point is a result too: recorded with its error, never dropped
            message = str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"
            row.update(status="error", error=message, traceback=traceback.format_exc(limit=4))
        # wall-clock start and end (Unix seconds) show whether two workers' points really overlap;
        # CPU seconds below the wall seconds mean the worker waited for a core
        row.update(
            seconds=time.perf_counter() - start, started_at=started_at, finished_at=time.time(),
            cpu_seconds=time.process_time() - cpu_start,
        )
        return row


def held_out_ids(loaded: LoadedModel, text: str, max_tokens: int) -> tuple[list[int], int]:
    """The first `max_tokens` tokens of `text` and the number of characters they cover."""
    if max_tokens < 2:
        raise SweepError("--max-tokens must be at least 2")
    every = encode_document(loaded.tokenizer, text)  # as the model reads a document: with its BOS, if any
    if len(every) < 2:
        raise SweepError("the held-out text is too short: it needs at least two tokens")
    ids = every[:max_tokens]
    chars = len(text) if len(ids) == len(every) else len(loaded.tokenizer.decode(ids, skip_special_tokens=True))
    return ids, max(chars, 1)


