"""A probe whose activity table counts what the Lava graph's ports carried.

The emulator's `RecordingProbe` derives a group's messages from the codes of the sites that group
sends (a nonzero code is one graded spike). On the Lava backend every group process counts, per
neuron, the nonzero values it passed to its output ports' `send` and how many update rounds its
neurons ran, and reports both in its readback (params.ReadbackLayout); this probe's activity table
is built from those counts. Synaptic operations are counted from the spike vectors the processes
sent into their Dense synapses (each nonzero spike reaches every stored synapse of its input).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl
import torch

from inspector.chip.probes import RecordingProbe


class PortActivityProbe(RecordingProbe):
    """`RecordingProbe` with messages and neuron updates taken from the Lava graph's port counts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.port_messages: dict[tuple[int, str], list[torch.Tensor]] = defaultdict(list)
        self.port_rounds: dict[tuple[int, str], list[int]] = defaultdict(list)

    def port_activity(self, layer: int, group: str, messages: np.ndarray, rounds: int) -> None:
        """One token of one group: messages per neuron (as counted by its process) and update rounds."""
        self.port_messages[(layer, group)].append(torch.from_numpy(np.asarray(messages, dtype=np.int64)).reshape(1, -1))
        self.port_rounds[(layer, group)].append(int(rounds))

    def _port_table(self) -> pl.DataFrame:
        """token x core: messages and sending neurons as the group processes counted them."""
        frames = []
        for (layer, group), cores in self.core_map.table.group_by(["layer", "group"], maintain_order=True):
            counted = self.port_messages.get((layer, group))
            if counted is None:
                raise RuntimeError(f"the Lava graph reported no messages for layer {layer} group {group}")
            messages = torch.cat(counted, dim=0).numpy()
            starts = cores["start"].to_numpy()
            per_core = np.add.reduceat(messages, starts, axis=1)
            active = np.add.reduceat((messages > 0).astype(np.int64), starts, axis=1)
            tokens, n_cores = per_core.shape
            frames.append(pl.DataFrame({
                "token": np.repeat(np.arange(tokens, dtype=np.int64), n_cores),
                "core": np.tile(cores["core"].to_numpy(), tokens),
                "port_messages": per_core.reshape(-1).astype(np.int64),
                "port_active": active.reshape(-1).astype(np.int64),
            }))
        return pl.concat(frames)

    def activity(self) -> pl.DataFrame:
        """The emulator probe's table (synaptic ops, neurons) with messages, sending neurons and
        neuron updates replaced by what the Lava processes counted."""
        table = super().activity()
        ports = self._port_table()
        table = table.join(ports, on=["token", "core"], how="left")
        if table["port_messages"].null_count():
            raise RuntimeError("the Lava graph did not report the messages of every core and token")
        table = table.with_columns(
            pl.col("port_messages").alias("messages"), pl.col("port_active").alias("active_neurons")
        ).drop("port_messages", "port_active")
        rounds = pl.DataFrame(
            [
                {"token": token, "layer": layer, "group": group, "rounds": count}
                for (layer, group), counts in self.port_rounds.items()
                for token, count in enumerate(counts)
            ],
            schema={"token": pl.Int64, "layer": pl.Int64, "group": pl.Utf8, "rounds": pl.Int64},
        )
        joined = table.join(rounds, on=["token", "layer", "group"], how="left")
        if joined["rounds"].null_count():
            raise RuntimeError("the Lava graph did not report the update rounds of every group and token")
        return joined.with_columns((pl.col("rounds") * pl.col("neurons")).alias("neuron_updates")).select(table.columns)
