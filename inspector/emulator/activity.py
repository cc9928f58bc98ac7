"""Per-neuron activity -> per-core activity, for any core map.

What the chip does per neuron and token (messages sent, synaptic operations received) does not
depend on how neurons are placed on cores; per-core figures do. Keeping the per-neuron counts and
summing them over each core's neuron range on demand is what lets the Hardware page re-map a model
(other per-core limits, packed synapses, shared cores) without running it again.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from inspector.emulator.mapper import CoreMap

# (layer, group) -> (messages, synops), each (tokens, neurons of the group): per neuron and token.
GroupActivity = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]

ACTIVITY_COLUMNS = ("token", "core", "chip", "layer", "group", "messages", "active_neurons", "synops", "neuron_updates", "neurons")


def core_activity(groups: GroupActivity, core_map: CoreMap) -> pl.DataFrame:
    """token x core (x group, when groups share cores): messages, neurons that sent any, synaptic
    ops, neuron updates. Every neuron of a group updates once per token."""
    frames = []
    for (layer, group), cores in core_map.table.group_by(["layer", "group"], maintain_order=True):
        messages, synops = groups[(int(layer), str(group))]
        tokens = messages.shape[0]
        starts, ends = cores["start"].to_numpy(), cores["end"].to_numpy()
        zero = np.zeros((tokens, 1))
        msg_cum = np.concatenate([zero, np.cumsum(messages, axis=1, dtype=np.float64)], axis=1)
        act_cum = np.concatenate([zero, np.cumsum(messages > 0, axis=1, dtype=np.float64)], axis=1)
        syn_cum = np.concatenate([zero, np.cumsum(synops, axis=1, dtype=np.float64)], axis=1)
        n_cores = len(starts)
        frames.append(
            pl.DataFrame(
                {
                    "token": np.repeat(np.arange(tokens), n_cores),
                    "core": np.tile(cores["core"].to_numpy(), tokens),
                    "chip": np.tile(cores["chip"].to_numpy(), tokens),
                    "layer": np.full(tokens * n_cores, layer),
                    "group": [group] * (tokens * n_cores),
                    "messages": (msg_cum[:, ends] - msg_cum[:, starts]).reshape(-1).round().astype(np.int64),
                    "active_neurons": (act_cum[:, ends] - act_cum[:, starts]).reshape(-1).round().astype(np.int64),
                    "synops": (syn_cum[:, ends] - syn_cum[:, starts]).reshape(-1).round().astype(np.int64),
                    "neuron_updates": np.tile(ends - starts, tokens).astype(np.int64),
                    "neurons": np.tile(ends - starts, tokens).astype(np.int64),
                }
            )
        )
    return pl.concat(frames).sort(["token", "core"], maintain_order=True)
