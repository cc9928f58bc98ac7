"""Dense against event-driven messaging, from one run's kept codes (what the Spike activity page shows).

A run counts messages under its own QuantConfig's modes (the activity table). From the codes the
probe kept for the window's tokens, the same run's messages are also counted as if every group
sent `dense` (every nonzero code) and `delta` at vth = 0 (only codes that changed): the messages
that carry a change. At vth = 0 sigma-delta gives bit-identical outputs, so these counts need no
second run. Changes need the previous token's codes, so a window that does not start at the
first token loses its first token here.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from inspector import schema as S
from inspector.chip.probes import FINAL_GROUP, GROUP_MESSAGES, MESSAGE_LAYOUT, RecordingProbe
from inspector.quant import messaging as msg
from inspector.schema import layer_key


def group_codes(probe: RecordingProbe, layer: int, group: str) -> list[np.ndarray]:
    """The window's codes (T, N) of every site whose values a group's neurons send."""
    if (layer, group) == FINAL_GROUP:
        return [probe.site_codes(site).numpy() for site in S.FINAL_GROUP.messages]
    return [probe.site_codes(layer_key(layer, site)).numpy() for site in GROUP_MESSAGES[group]]


def _combine(group: str, per_site: list[np.ndarray]) -> np.ndarray:
    """Per-neuron counts of a group from its sites': stacked sites add (a norm neuron feeding i, f, g)."""
    if MESSAGE_LAYOUT.get(group) == S.STACK:
        return np.sum(per_site, axis=0)
    return np.concatenate(per_site, axis=1)


def change_raster(probe: RecordingProbe, layer: int, group: str) -> tuple[np.ndarray, int]:
    """(T', N) messages per neuron under sigma-delta at vth = 0 (code changes), and the first token of its rows."""
    codes = group_codes(probe, layer, group)
    first = probe.window_start
    changes = []
    for site_codes in codes:
        c = torch.as_tensor(site_codes, dtype=torch.int64)
        _, sent, _ = msg.transmit(c[None], msg.Messaging(msg.DELTA, 0))
        changes.append((sent[0] != 0).numpy().astype(np.int64))
    raster = _combine(group, changes)
    if first > 0:  # the first kept token's change is relative to a token whose codes were not kept
        return raster[1:], first + 1
    return raster, first


def mode_comparison(probe: RecordingProbe, activity: pl.DataFrame) -> pl.DataFrame:
    """Messages per token of every sending group over the window, three ways.

    Columns: group (messaging group key), label, dense (every nonzero code), changes (delta at
    vth = 0), this_run (as the run counted them under its own mode), tokens.
    """
    rows = []
    layers = sorted(layer for layer in activity["layer"].unique().to_list() if layer >= 0)
    for key, group in msg.GROUPS.items():
        dense = changes = 0
        tokens = 0
        for layer in layers:
            codes = group_codes(probe, layer, group.core_group)
            raster, first = change_raster(probe, layer, group.core_group)
            skip = first - probe.window_start
            dense += int(sum((c[skip:] != 0).sum() for c in codes))
            changes += int(raster.sum())
            tokens = raster.shape[0]
        counted = activity.filter(
            (pl.col("group") == group.core_group) & (pl.col("token") >= probe.window_start + (1 if probe.window_start else 0))
        )["messages"].sum()
        per = max(tokens, 1)
        rows.append({
            "group": key, "label": group.label, "dense": dense / per, "changes": changes / per,
            "this_run": float(counted or 0) / per, "tokens": tokens,
        })
    return pl.DataFrame(rows)
