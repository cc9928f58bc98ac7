"""Probes: what the emulated chip did, per token, per layer and per core.

- Activity: a neuron that outputs a nonzero code sends one message (a graded spike); zeros are
  free (event-driven). A nonzero input spike costs one synaptic operation per stored (nonzero)
  synapse it reaches. Every neuron of a group updates once per token.
- Saturation: every site reports which values were clipped to their register range.
- Tensors: every site's integer values, dequantized to real units for diffing with the float model.

Per-core figures come from the core map: a group's per-neuron counts are summed over each core's
neuron range. Recording tensors is optional (`record_tensors`), since they dominate the memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import polars as pl
import torch

from inspector.emulator.activity import GroupActivity, core_activity
from inspector.emulator.mapper import CoreMap
from inspector.quant.convert import IntBitLinear

# Which probed sites carry each group's outgoing messages, and which projections its synapses serve.
GROUP_MESSAGES = {
    "norm_attn": ("i_proj.spikes", "f_proj.spikes", "g_proj.spikes"),
    "proj_ifg": ("i_proj", "f_proj", "g_proj"),
    "mlgru": ("o_proj.spikes",),
    "proj_o": ("o_proj",),
    "norm_mlp": ("gate_proj.spikes",),
    "proj_gate": ("gate", "y"),
    "glu": ("down_proj.spikes",),
    "proj_down": ("down_proj",),
    "residual": ("residual_mlp",),
}
GROUP_SYNAPSES = {"proj_ifg": ("i_proj", "f_proj", "g_proj"), "proj_o": ("o_proj",), "proj_gate": ("gate_proj",), "proj_down": ("down_proj",)}
MESSAGE_LAYOUT = {"norm_attn": "stack", "proj_gate": "concat", "proj_ifg": "concat"}


def split_site_key(key: str) -> tuple[int, str]:
    """"layers.3.hidden" -> (3, "hidden"); keys outside the layer stack get layer -1."""
    if key.startswith("layers."):
        _, layer, site = key.split(".", 2)
        return int(layer), site
    return -1, key


@dataclass
class SiteRecord:
    """One site over the tokens seen so far: values (T, N) dequantized, clipped mask (T, N)."""

    kind: str
    scale: float
    values: list[torch.Tensor] = field(default_factory=list)
    codes: list[torch.Tensor] = field(default_factory=list)
    clipped: list[torch.Tensor] = field(default_factory=list)


class RecordingProbe:
    """Collects activity, saturation and (optionally) tensors for batch size 1 runs."""

    def __init__(self, core_map: CoreMap, record_tensors: bool = True):
        self.core_map = core_map
        self.record_tensors = record_tensors
        self.sites: dict[str, SiteRecord] = {}
        self.synops: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.nonzero: dict[str, list[torch.Tensor]] = defaultdict(list)

    # -- the Probe protocol used by IntegerLM ------------------------------------------------
    def site(self, key: str, codes: torch.Tensor, scale: float, clipped: Optional[torch.Tensor], kind: str) -> None:
        codes = codes[0]  # batch 1
        record = self.sites.setdefault(key, SiteRecord(kind, scale))
        if kind != "host":
            self.nonzero[key].append(codes != 0)
            mask = clipped[0] if clipped is not None else torch.zeros_like(codes, dtype=torch.bool)
            record.clipped.append(mask)
            if kind in ("state", "activation", "gate"):
                record.codes.append(codes)
        if (self.record_tensors and kind != "accumulator") or kind == "host":
            record.values.append((codes.double() * scale).float() if kind != "host" else codes.float())

    def synapses(self, key: str, spikes: torch.Tensor, proj: IntBitLinear) -> None:
        self.synops[key].append(proj.matrix.synaptic_ops(spikes[0]))  # (T, out): synaptic ops per output neuron

    # -- results -------------------------------------------------------------------------------
    def tokens(self) -> int:
        first = self.sites.get("embeddings")
        return sum(v.shape[0] for v in first.clipped) if first else 0

    def _cat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=0)

    def site_values(self, key: str) -> torch.Tensor:
        """(T, N) dequantized values of a site (requires record_tensors, except for logits)."""
        return self._cat(self.sites[key].values)

    def site_codes(self, key: str) -> torch.Tensor:
        return self._cat(self.sites[key].codes)

    def _group_messages(self, layer: int, group: str) -> torch.Tensor:
        """(T, neurons) messages each neuron of the group sent per token."""
        if layer < 0:
            return self._cat(self.nonzero["final_norm"]).long()
        parts = [self._cat(self.nonzero[f"layers.{layer}.{site}"]).long() for site in GROUP_MESSAGES[group]]
        if MESSAGE_LAYOUT.get(group) == "stack":
            return torch.stack(parts).sum(dim=0)
        return torch.cat(parts, dim=-1)

    def _group_synops(self, layer: int, group: str, tokens: int, neurons: int) -> torch.Tensor:
        names = GROUP_SYNAPSES.get(group)
        if layer < 0 or names is None:
            return torch.zeros(tokens, neurons)
        return torch.cat([self._cat(self.synops[f"layers.{layer}.{name}"]) for name in names], dim=-1)

    def core_messages(self, core: int) -> np.ndarray:
        """(T, neurons of the core): messages each neuron of one core sent per token (a raster)."""
        row = self.core_map.table.filter(pl.col("core") == core).row(0, named=True)
        messages = self._group_messages(row["layer"], row["group"]).numpy()
        return messages[:, row["start"] : row["end"]]

    def group_activity(self) -> GroupActivity:
        """Per neuron and token, for every neuron group of the core map: (messages, synaptic ops)."""
        tokens = self.tokens()
        out: GroupActivity = {}
        for layer, group in self.core_map.table.select("layer", "group").unique(maintain_order=True).iter_rows():
            messages = self._group_messages(layer, group).numpy()
            out[(layer, group)] = (messages, self._group_synops(layer, group, tokens, messages.shape[1]).numpy())
        return out

    def activity(self) -> pl.DataFrame:
        """token x core: messages, neurons that sent any, synaptic ops, neuron updates (one row per token and core)."""
        return core_activity(self.group_activity(), self.core_map)

    def saturation(self) -> pl.DataFrame:
        """token x site: how many values were clipped, out of how many."""
        rows = []
        for key, record in self.sites.items():
            if record.kind == "host":
                continue
            clipped = self._cat(record.clipped)
            counts = clipped.sum(dim=1).tolist()
            layer, site = split_site_key(key)
            for token, count in enumerate(counts):
                rows.append({"token": token, "layer": layer, "site": site, "kind": record.kind, "clipped": int(count), "values": int(clipped.shape[1])})
        return pl.DataFrame(rows)

    def saturated_neurons(self) -> pl.DataFrame:
        """One row per clipped value: token, site, neuron index, the (clipped) code."""
        rows = []
        for key, record in self.sites.items():
            if record.kind == "host" or not record.codes:
                continue
            clipped = self._cat(record.clipped)
            if not clipped.any():
                continue
            codes = self._cat(record.codes)
            layer, site = split_site_key(key)
            for token, neuron in clipped.nonzero().tolist():
                rows.append({"token": token, "layer": layer, "site": site, "neuron": neuron, "code": int(codes[token, neuron])})
        schema = {"token": pl.Int64, "layer": pl.Int64, "site": pl.Utf8, "neuron": pl.Int64, "code": pl.Int64}
        return pl.DataFrame(rows, schema=schema)

    def states(self) -> pl.DataFrame:
        """The MLGRU state codes of every layer and neuron per token (long format)."""
        frames = []
        for key, record in self.sites.items():
            if record.kind != "state":
                continue
            codes = self._cat(record.codes).numpy()
            tokens, neurons = codes.shape
            frames.append(
                pl.DataFrame(
                    {
                        "token": np.repeat(np.arange(tokens), neurons),
                        "layer": np.full(tokens * neurons, split_site_key(key)[0]),
                        "neuron": np.tile(np.arange(neurons), tokens),
                        "code": codes.reshape(-1),
                    }
                )
            )
        return pl.concat(frames) if frames else pl.DataFrame()

    def tensors(self) -> pl.DataFrame:
        """Every recorded site's dequantized values, long format (token, site, neuron, value)."""
        if not self.record_tensors:
            raise ValueError("this run was recorded without tensors (record_tensors=False)")
        frames = []
        for key, record in self.sites.items():
            if record.kind == "host" or not record.values:
                continue
            values = self._cat(record.values).numpy()
            tokens, neurons = values.shape
            layer, site = split_site_key(key)
            frames.append(
                pl.DataFrame(
                    {
                        "token": np.repeat(np.arange(tokens), neurons),
                        "layer": np.full(tokens * neurons, layer),
                        "site": [site] * (tokens * neurons),
                        "neuron": np.tile(np.arange(neurons), tokens),
                        "value": values.reshape(-1),
                    }
                )
            )
        return pl.concat(frames)
