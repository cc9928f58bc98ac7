"""Per-neuron activity -> per-core activity, for any core map.

What the chip does per neuron and token (messages sent, synaptic operations received) does not
depend on how neurons are placed on cores; per-core figures do. Keeping the per-neuron counts and
summing them over each core's neuron range on demand is what lets the Hardware page re-map a model
(other per-core limits, packed synapses, shared cores) without running it again.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from inspector.chip.mapper import CoreMap

# (layer, group) -> (messages, synops), each (tokens, neurons of the group): per neuron and token.
GroupActivity = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]

ACTIVITY_COLUMNS = (
    "token", "core", "chip", "layer", "group", "messages", "active_neurons", "synops", "neuron_updates", "neurons",
)


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(tokens, segments): sums of `values` (tokens, neurons) over each [start, end) neuron range.

    The segments of one group tile [0, neurons) in order (the mapper packs contiguously), so one
    `np.add.reduceat` gives all sums, exactly, in integers.
    """
    if starts[0] != 0 or ends[-1] != values.shape[1] or not np.array_equal(starts[1:], ends[:-1]):
        raise ValueError("the core map's segments of a group must cover its neurons contiguously and in order")
    return np.add.reduceat(values, starts, axis=1, dtype=np.int64)


def core_activity(groups: GroupActivity, core_map: CoreMap) -> pl.DataFrame:
    """token x core (x group, when groups share cores): messages, neurons that sent any, synaptic
    ops, neuron updates. Every neuron of a group updates once per token."""
    table = core_map.table
    rows: dict[tuple[int, str], list[int]] = {}
    for index, key in enumerate(zip(table["layer"].to_list(), table["group"].to_list(), strict=True)):
        rows.setdefault(key, []).append(index)
    core_col, chip_col, start_col, end_col = (table[c].to_numpy() for c in ("core", "chip", "start", "end"))
    parts: dict[str, list[np.ndarray]] = {c: [] for c in ACTIVITY_COLUMNS if c != "group"}
    group_names: list[str] = []
    group_lengths: list[int] = []
    for (layer, group), index in rows.items():
        index = np.asarray(index)
        messages, synops = groups[(int(layer), str(group))]
        tokens = messages.shape[0]
        starts, ends = start_col[index], end_col[index]
        n = tokens * len(index)
        sizes = (ends - starts).astype(np.int64)
        parts["token"].append(np.repeat(np.arange(tokens, dtype=np.int64), len(index)))
        parts["core"].append(np.tile(core_col[index], tokens))
        parts["chip"].append(np.tile(chip_col[index], tokens))
        parts["layer"].append(np.full(n, layer, dtype=np.int64))
        parts["messages"].append(_segment_sums(messages, starts, ends).reshape(-1))
        parts["active_neurons"].append(_segment_sums(messages > 0, starts, ends).reshape(-1))
        parts["synops"].append(_segment_sums(synops, starts, ends).reshape(-1))
        parts["neuron_updates"].append(np.tile(sizes, tokens))
        parts["neurons"].append(np.tile(sizes, tokens))
        group_names.append(str(group))
        group_lengths.append(n)
    data = {c: np.concatenate(v).astype(np.int64) for c, v in parts.items()}
    data["group"] = np.repeat(np.asarray(group_names, dtype=object), group_lengths)
    return pl.DataFrame({c: pl.Series(data[c], dtype=pl.Utf8) if c == "group" else data[c] for c in ACTIVITY_COLUMNS}).sort(
        ["token", "core"], maintain_order=True
    )
