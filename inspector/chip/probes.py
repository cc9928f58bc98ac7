"""Probes: what the emulated chip did, per token, per layer and per core.

- Activity: a neuron that outputs a nonzero code sends one message (a graded spike); zeros are
  free (event-driven). Into a BitLinear, what is sent follows the group's messaging mode
  (`inspector.quant.messaging`): under sigma-delta only changes of at least vth are messages.
  A message costs one synaptic operation per stored (nonzero) synapse it reaches. Every neuron
  of a group updates once per token.
- Saturation: every site reports which values were clipped to their register range, how many
  codes were 0 and the largest |code| (from which the bits actually used follow).
- Tensors: every site's integer values, dequantized to real units for diffing with the float model.

Memory is bounded by design. Per-neuron data (values, codes, clipped masks, message rasters) is
kept only for the tokens from `keep_from` on (the *window*: by default the generated part); every
token gets per-token summaries, reduced as it is recorded: per-core activity counts and per-site
clip/zero/max counts, plus how often each neuron clipped. A 2,000-token prompt then costs a few
kilobytes per token instead of megabytes.

Per-core figures come from the core map: a group's per-neuron counts are summed over each core's
neuron range. Recording dequantized values is optional (`record_tensors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import polars as pl
import torch

from inspector import schema as S
from inspector.chip.activity import GroupActivity
from inspector.chip.mapper import CoreMap
from inspector.quant.config import QuantConfig
from inspector.quant.convert import IntBitLinear
from inspector.quant.widths import site_bits
from inspector.schema import split_site_key

# Which probed sites carry each group's outgoing messages, and which projections its synapses serve
# (declared in the schema).
GROUP_MESSAGES = {g.name: g.messages for g in S.LAYER_GROUPS}
GROUP_SYNAPSES = {g.name: g.synapses for g in S.LAYER_GROUPS if g.synapses}
MESSAGE_LAYOUT = {g.name: g.layout for g in S.LAYER_GROUPS}
FINAL_GROUP = (-1, S.FINAL_GROUP.name)
_MESSAGE_OF = {site: group for group, sites in GROUP_MESSAGES.items() for site in sites}
_SYNAPSE_OF = {name: group for group, names in GROUP_SYNAPSES.items() for name in names}
SUMMARY_COLUMNS = ("clipped", "values", "zero", "max_abs_code")


def dequantize(codes: torch.Tensor, scale: float) -> torch.Tensor:
    """Codes times their scale, as float32 (rounded once, from the exact float64 product)."""
    return (codes.double() * scale).float()


def effective_bits(max_abs_code: np.ndarray | int, signed: bool = True) -> np.ndarray:
    """Bits a register needs to hold codes up to max|code| (sign bit included): 0 needs 1 bit."""
    magnitude = np.asarray(max_abs_code, dtype=np.int64)
    length = np.where(magnitude > 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) + 1, 0)
    return length + 1 if signed else np.maximum(length, 1)


@dataclass
class SiteRecord:
    """One site: per-token summaries for every token, per-neuron data for the window's tokens."""

    kind: str
    scale: float
    seen: int = 0  # tokens recorded so far
    values: list[torch.Tensor] = field(default_factory=list)  # (T, N) host values (logits), window only
    codes: list[torch.Tensor] = field(default_factory=list)  # (T, N) int32, window only
    clipped: list[torch.Tensor] = field(default_factory=list)  # (T, N) bool, window only
    # (T, 3) nonzero, max |code|, clipped: for the tokens whose codes are not kept (before the window);
    # the window's rows are computed from the kept codes when read
    summary: list[torch.Tensor] = field(default_factory=list)
    width: Optional[int] = None  # neurons of the site
    neuron_clips: Optional[np.ndarray] = None  # (N,) times each neuron clipped, tokens summarized so far

    @property
    def keeps_codes(self) -> bool:
        return self.kind in KEPT_KINDS


# Kinds whose codes are kept for the window's tokens: their summaries are computed from them when read,
# so a generation step records a site with a copy, not five reductions. Accumulators have no float
# counterpart (no values, no tensors table) but keep codes too, for their summaries and clipped values.
KEPT_KINDS = (S.STATE, S.ACTIVATION, S.GATE, S.ACCUMULATOR)
VALUE_KINDS = (S.STATE, S.ACTIVATION, S.GATE)  # kinds with dequantized values (site_values, tensors)
SYNOPS_BATCH = 64  # generated tokens whose synaptic ops are counted together (see _count_synops)


@dataclass
class _ChunkActivity:
    """One group's activity for one forward call: per-core counts, and the window's per-neuron synaptic ops."""

    start: int  # first token
    skip: int  # tokens before the window
    tokens: int
    raster: Optional[torch.Tensor] = None  # (T - skip, neurons) int8 messages per neuron, window rows only
    messages: Optional[np.ndarray] = None  # (T, cores); for a chunk wholly in the window, counted from its raster when read
    active: Optional[np.ndarray] = None  # (T, cores) neurons that sent at least one message
    synops: Optional[np.ndarray] = None  # (T, cores), filled when counted
    window_synops: Optional[np.ndarray] = None  # (T - skip, neurons)


@dataclass
class _GroupChunk:
    """The parts of one group's messages and synapses for one forward call, until all have arrived."""

    messages: dict[str, torch.Tensor] = field(default_factory=dict)
    synops: dict[str, torch.Tensor] = field(default_factory=dict)


class RecordingProbe:
    """Collects activity, saturation and (optionally) tensors for batch size 1 runs.

    `keep_from`: the first token (counted from the start of the prompt) whose per-neuron data is
    kept; 0 keeps every token. `chunk_values`: when a dict, every site's dequantized values of the
    next forward call are put there whatever the window (the lockstep comparison reads them chunk
    by chunk and clears it).
    """

    def __init__(
        self,
        core_map: CoreMap,
        record_tensors: bool = True,
        keep_from: int = 0,
        qc: QuantConfig | None = None,
        summaries: bool = True,
    ):
        self.core_map = core_map
        self.summaries = summaries  # False: only fill chunk_values (a pass that re-reads tokens already counted)
        self.record_tensors = record_tensors
        self.keep_from = max(int(keep_from), 0)
        self.qc = qc
        self.sites: dict[str, SiteRecord] = {}
        self.chunk_values: Optional[dict[str, torch.Tensor]] = None
        self._cores = {key: frame for key, frame in core_map.table.group_by(["layer", "group"], maintain_order=True)}
        self._pending: dict[tuple[int, str], _GroupChunk] = {}
        self._group_tokens: dict[tuple[int, str], int] = {}
        # per group: one _ChunkActivity per forward call
        self._activity: dict[tuple[int, str], list[_ChunkActivity]] = {}
        self._unsynced: dict[tuple[int, str], list] = {}  # chunks whose synaptic ops are not counted yet
        self._unsynced_tokens: dict[tuple[int, str], int] = {}
        self._rasters: dict[tuple[int, str], list[torch.Tensor]] = {}  # window tokens' per-neuron messages
        self._zero_masks: dict[tuple[int, int], torch.Tensor] = {}
        self._message_groups: dict[str, Optional[tuple[int, str]]] = {}  # site key -> the group its messages feed
        self._core_ranges = {key: self._ranges(frame) for key, frame in self._cores.items()}

    # -- the Probe protocol used by IntegerLM ------------------------------------------------
    def site(self, key: str, codes: torch.Tensor, scale: float, clipped: Optional[torch.Tensor], kind: str) -> None:
        codes = codes[0]  # (T, N), batch 1
        record = self.sites.get(key)
        if record is None:
            record = self.sites[key] = SiteRecord(kind, scale)
        tokens = codes.shape[0]
        start, record.seen = record.seen, record.seen + tokens
        skip = min(max(self.keep_from - start, 0), tokens)  # rows before the window
        if kind == S.HOST:
            values = codes.float()
            if self.chunk_values is not None:
                self.chunk_values[key] = values
            if skip < tokens:
                record.values.append(values[skip:].clone())  # a copy: the logits belong to the caller
            return
        if self.chunk_values is not None and kind != S.ACCUMULATOR:
            self.chunk_values[key] = dequantize(codes, scale)
        if not self.summaries:
            return
        record.width = codes.shape[1]
        mask = clipped[0] if clipped is not None else None
        # rows summarized now; the window's kept rows are summarized when read
        summarized = skip if record.keeps_codes else tokens
        if summarized:
            self._summarize(record, codes[:summarized], mask[:summarized] if mask is not None else None)
        if key in S.FINAL_GROUP.messages:  # the layers' message sites: counted from what was sent (sent, synapses)
            self._add_part(FINAL_GROUP, "messages", key, codes != 0)
        if skip < tokens:
            if mask is None:
                mask = self._no_clips(tokens - skip, codes.shape[1])
            elif skip:
                mask = mask[skip:].clone()  # a copy: a view would keep the whole chunk's mask alive
            record.clipped.append(mask)
            if record.keeps_codes:
                record.codes.append(codes[skip:].to(torch.int32))

    @staticmethod
    def _summarize(record: SiteRecord, codes: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        """Per-token summary rows (and per-neuron clip counts) of codes whose per-neuron data is not kept."""
        tokens = codes.shape[0]
        clips = mask.sum(dim=1) if mask is not None else torch.zeros(tokens, dtype=torch.int64)
        peak = codes.abs().amax(dim=1) if codes.numel() else torch.zeros(tokens, dtype=torch.int64)
        record.summary.append(torch.stack([(codes != 0).sum(dim=1), peak.to(torch.int64), clips], dim=1))
        if mask is not None and bool(mask.any()):
            counts = mask.sum(dim=0).numpy()
            record.neuron_clips = counts if record.neuron_clips is None else record.neuron_clips + counts

    def _no_clips(self, tokens: int, neurons: int) -> torch.Tensor:
        """An all-False mask, shared between sites of one shape (never written to)."""
        mask = self._zero_masks.get((tokens, neurons))
        if mask is None:
            mask = self._zero_masks[(tokens, neurons)] = torch.zeros(tokens, neurons, dtype=torch.bool)
        return mask

    def sent(self, key: str, sent: torch.Tensor) -> None:
        """`sent`: what the neurons of an element-wise message site sent (0 = no message; the codes
        when dense, the deltas under sigma-delta): each nonzero is one message of its group."""
        if not self.summaries:
            return
        group_key = self._message_group(key)
        if group_key is not None:
            self._add_part(group_key, "messages", split_site_key(key)[1], sent[0] != 0)

    def synapses(self, key: str, spikes: torch.Tensor, proj: IntBitLinear) -> None:
        """`spikes`: what the projection's input neurons sent (0 = no message; the deltas under
        sigma-delta). Each message is one message of the sending group and one synaptic operation
        per stored synapse it reaches (its fan-out)."""
        if not self.summaries:
            return
        layer, name = split_site_key(key)
        sending = self._message_group(key + S.SPIKES)
        sent = spikes[0] != 0  # (T, N), batch 1
        if sending is not None:
            self._add_part(sending, "messages", name + S.SPIKES, sent)
        group = _SYNAPSE_OF.get(name)
        if group is not None:  # counted later on the shared int8 ternary matrix (see _count_synops)
            self._add_part((layer, group), "synops", name, (proj.matrix, sent.to(torch.int8)))

    # -- activity, reduced per core as soon as a group's parts are all there --------------------
    def _message_group(self, key: str) -> Optional[tuple[int, str]]:
        """The group whose outgoing messages a site's codes are (None for most sites), cached per key."""
        if key not in self._message_groups:
            layer, site = split_site_key(key)
            group = (layer, _MESSAGE_OF[site]) if layer >= 0 and site in _MESSAGE_OF else None
            self._message_groups[key] = FINAL_GROUP if key in S.FINAL_GROUP.messages else group
        return self._message_groups[key]

    @staticmethod
    def _ranges(cores: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, bool]:
        """A group's cores as neuron ranges (starts, ends), and whether they tile it in order."""
        starts, ends = cores["start"].to_numpy(), cores["end"].to_numpy()
        contiguous = bool(starts.size and starts[0] == 0 and np.array_equal(starts[1:], ends[:-1]))
        return starts, ends, contiguous

    def _add_part(self, group_key: tuple[int, str], kind: str, name: str, value: torch.Tensor) -> None:
        chunk = self._pending.setdefault(group_key, _GroupChunk())
        parts = getattr(chunk, kind)
        if name in parts:
            raise RuntimeError(f"probe: {group_key} received {name} twice before its other parts")
        parts[name] = value
        _, group = group_key
        needed_messages = S.FINAL_GROUP.messages if group_key == FINAL_GROUP else GROUP_MESSAGES[group]
        if len(chunk.messages) == len(needed_messages) and len(chunk.synops) == len(GROUP_SYNAPSES.get(group, ())):
            del self._pending[group_key]
            self._reduce(group_key, chunk, needed_messages)

    def _reduce(self, group_key: tuple[int, str], chunk: _GroupChunk, names: tuple[str, ...]) -> None:
        parts = [chunk.messages[name].long() for name in names]
        if MESSAGE_LAYOUT.get(group_key[1]) == S.STACK:
            messages = torch.stack(parts).sum(dim=0)
        else:
            messages = torch.cat(parts, dim=-1)
        tokens, neurons = messages.shape
        start = self._group_tokens.get(group_key, 0)
        self._group_tokens[group_key] = start + tokens
        if group_key not in self._cores:
            return
        skip = min(max(self.keep_from - start, 0), tokens)
        chunk_activity = _ChunkActivity(start, skip, tokens)
        if skip < tokens:
            chunk_activity.raster = messages[skip:].to(torch.int8)
            self._rasters.setdefault(group_key, []).append(chunk_activity.raster)
        if skip > 0:  # rows before the window keep no raster: reduce to per-core counts now
            self._count_messages(group_key, [chunk_activity], [messages.to(torch.int32).numpy()])
        self._activity.setdefault(group_key, []).append(chunk_activity)
        synapse_names = GROUP_SYNAPSES.get(group_key[1], ())
        if synapse_names:
            pending = self._unsynced.setdefault(group_key, [])
            pending.append((chunk_activity, [chunk.synops[n] for n in synapse_names]))
            self._unsynced_tokens[group_key] = self._unsynced_tokens.get(group_key, 0) + tokens
            if self._unsynced_tokens[group_key] >= SYNOPS_BATCH:
                self._count_synops(group_key)
        else:
            chunk_activity.synops = np.zeros((tokens, len(self._core_ranges[group_key][0])), dtype=np.int64)

    def _count_messages(self, group_key: tuple[int, str], chunks: list[_ChunkActivity], per_neuron: list[np.ndarray]) -> None:
        """Per-core messages and sending neurons of chunks, from their per-neuron message counts (one reduction)."""
        msg = np.concatenate(per_neuron) if len(per_neuron) > 1 else per_neuron[0]
        messages, active = self._per_core(group_key, msg), self._per_core(group_key, (msg > 0).astype(np.int32))
        row = 0
        for chunk in chunks:
            chunk.messages, chunk.active = messages[row : row + chunk.tokens], active[row : row + chunk.tokens]
            row += chunk.tokens

    def _count_window_messages(self) -> None:
        """Per-core counts of the chunks wholly in the window, from their rasters, a group at a time."""
        for group_key, chunks in self._activity.items():
            waiting = [c for c in chunks if c.messages is None]
            if waiting:
                self._count_messages(group_key, waiting, [c.raster.numpy().astype(np.int32) for c in waiting])

    def _per_core(self, group_key: tuple[int, str], values: np.ndarray) -> np.ndarray:
        """(T, neurons) per-neuron counts -> (T, cores) sums over each core's neuron range."""
        starts, ends, tiled = self._core_ranges[group_key]
        if tiled and ends[-1] == values.shape[1]:  # cores tile the group in order (the mapper's packing): one reduceat
            return np.add.reduceat(values, starts, axis=1).astype(np.int64)
        cum = np.concatenate([np.zeros((values.shape[0], 1), dtype=np.int64), np.cumsum(values, axis=1, dtype=np.int64)], axis=1)
        return cum[:, ends] - cum[:, starts]

    def _count_synops(self, group_key: tuple[int, str]) -> None:
        """Synaptic ops of a group's pending chunks, one exact int8 GEMM per projection for all of them.

        A generation step is one token: counting its synaptic ops alone would stream every |W| matrix
        from memory once per token, as much traffic as the accumulation itself. Deferred up to
        SYNOPS_BATCH tokens (or until a table is read), the matrices are read once per batch.
        """
        pending = self._unsynced.pop(group_key, [])
        self._unsynced_tokens.pop(group_key, None)
        if not pending:
            return
        per_projection = []
        for k, (matrix, _) in enumerate(pending[0][1]):
            active = torch.cat([parts[k][1] for _, parts in pending], dim=0)  # (T, in) 0/1 int8
            per_projection.append(matrix.synaptic_ops(active))  # (T, out) int64
        synops = torch.cat(per_projection, dim=-1).numpy()  # (T, neurons of the group)
        row = 0
        for chunk_activity, _ in pending:
            rows = synops[row : row + chunk_activity.tokens]
            row += chunk_activity.tokens
            chunk_activity.synops = self._per_core(group_key, rows)
            if chunk_activity.skip < chunk_activity.tokens:
                chunk_activity.window_synops = rows[chunk_activity.skip :].astype(np.int32)

    def flush(self) -> None:
        """Count the synaptic ops still deferred (every table reader does this first)."""
        for group_key in list(self._unsynced):
            self._count_synops(group_key)

    # -- results -------------------------------------------------------------------------------
    def tokens(self) -> int:
        first = self.sites.get(S.EMBEDDINGS)
        return first.seen if first else 0

    @property
    def window_start(self) -> int:
        """The first token with per-neuron data (site_values, site_codes, states, rasters, ...)."""
        return min(self.keep_from, self.tokens())

    def _cat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=0)

    def has_values(self, key: str) -> bool:
        """Whether `site_values(key)` has the window's values (logits always; chip sites with record_tensors)."""
        record = self.sites.get(key)
        if record is None:
            return False
        if record.kind == S.HOST:
            return bool(record.values)
        return self.record_tensors and record.kind in VALUE_KINDS and bool(record.codes)

    def site_values(self, key: str) -> torch.Tensor:
        """(T, N) dequantized values of a site for the window's tokens (requires record_tensors, except for logits).

        Computed from the kept codes when asked: the same bits as dequantizing token by token."""
        record = self.sites[key]
        if record.kind == S.HOST:
            return self._cat(record.values)
        if not self.has_values(key):
            raise ValueError(f"no values of {key} were recorded (record_tensors=False, or a site without codes)")
        return dequantize(self._cat(record.codes), record.scale)

    def site_codes(self, key: str) -> torch.Tensor:
        """(T, N) codes of a site for the window's tokens."""
        return self._cat(self.sites[key].codes)

    def core_messages(self, core: int) -> np.ndarray:
        """(T, neurons of the core): messages each neuron of one core sent per token of the window (a raster)."""
        row = self.core_map.table.filter(pl.col("core") == core).row(0, named=True)
        messages = self._cat(self._rasters[(row["layer"], row["group"])]).numpy()
        return messages[:, row["start"] : row["end"]].astype(np.int64)

    def group_activity(self) -> GroupActivity:
        """Per neuron and token of the window, for every neuron group of the core map: (messages, synaptic ops).

        What the Hardware page re-maps without running the model again (`inspector.chip.activity`);
        the window's tokens only, like every per-neuron table.
        """
        self.flush()
        out: GroupActivity = {}
        for layer, group in self.core_map.table.select("layer", "group").unique(maintain_order=True).iter_rows():
            key = (layer, group)
            rasters = self._rasters.get(key)
            messages = self._cat(rasters).numpy().astype(np.int64) if rasters else np.zeros((0, 0), dtype=np.int64)
            synops = [c.window_synops for c in self._activity.get(key, []) if c.window_synops is not None]
            out[key] = (messages, np.concatenate(synops).astype(np.int64) if synops else np.zeros_like(messages))
        return out

    def activity(self) -> pl.DataFrame:
        """token x core: messages, neurons that sent any, synaptic ops, neuron updates (one row per token and core)."""
        self.flush()
        self._count_window_messages()
        frames = []
        for group_key, chunks in self._activity.items():
            layer, group = group_key
            cores = self._cores[group_key]
            n_cores = cores.height
            first = np.concatenate([np.arange(c.start, c.start + c.tokens) for c in chunks])
            tokens = len(first)
            sizes = (cores["end"] - cores["start"]).to_numpy().astype(np.int64)
            frames.append(
                pl.DataFrame(
                    {
                        "token": np.repeat(first, n_cores),
                        "core": np.tile(cores["core"].to_numpy(), tokens),
                        "chip": np.tile(cores["chip"].to_numpy(), tokens),
                        "layer": np.full(tokens * n_cores, layer),
                        "group": [group] * (tokens * n_cores),
                        "messages": np.concatenate([c.messages for c in chunks]).reshape(-1),
                        "active_neurons": np.concatenate([c.active for c in chunks]).reshape(-1),
                        "synops": np.concatenate([c.synops for c in chunks]).reshape(-1),
                        "neuron_updates": np.tile(sizes, tokens),
                        "neurons": np.tile(sizes, tokens),
                    }
                )
            )
        return pl.concat(frames).sort(["token", "core"])

    def saturation(self) -> pl.DataFrame:
        """token x site: clipped values, of how many, zero codes, max |code|, and the bits used and available.

        One table from per-site arrays (a DataFrame per site costs more than the counts, at hundreds of sites)."""
        names: list[str] = []
        kinds: list[str] = []
        parts: dict[str, list[np.ndarray]] = {"token": [], "layer": [], "summary": [], "effective_bits": [], "bits": []}
        for key, record in self.sites.items():
            if record.kind == S.HOST or record.width is None:
                continue
            summary = self._summary(record)
            layer, site = split_site_key(key)
            tokens = summary.shape[0]
            bits = site_bits(site, self.qc) if self.qc is not None else None
            needed = effective_bits(summary[:, 3], signed=record.kind != S.GATE)
            # A code at the negative end, -2^(b-1), has |code| = 2^(b-1) yet fits b bits: clamp.
            names.append(site)
            kinds.append(record.kind)
            parts["token"].append(np.arange(tokens))
            parts["layer"].append(np.full(tokens, layer))
            parts["summary"].append(summary)
            parts["effective_bits"].append(np.minimum(needed, bits) if bits is not None else needed)
            parts["bits"].append(np.full(tokens, -1 if bits is None else bits, dtype=np.int64))
        if not names:
            raise ValueError("no chip site was recorded")  # as pl.concat([]) did
        picks = np.repeat(np.arange(len(names)), [len(t) for t in parts["token"]])
        summary = np.concatenate(parts["summary"])
        bits = np.concatenate(parts["bits"])
        columns = {
            "token": np.concatenate(parts["token"]),
            "layer": np.concatenate(parts["layer"]),
            "site": pl.Series("site", names, dtype=pl.String).gather(picks),
            "kind": pl.Series("kind", kinds, dtype=pl.String).gather(picks),
        }
        columns |= {name: summary[:, i] for i, name in enumerate(SUMMARY_COLUMNS)}
        columns["effective_bits"] = np.concatenate(parts["effective_bits"])
        columns["bits"] = pl.Series("bits", bits, dtype=pl.Int64).set(pl.Series(bits == -1), None)
        return pl.DataFrame(columns)

    def _summary(self, record: SiteRecord) -> np.ndarray:
        """(T, 4) SUMMARY_COLUMNS of a site over every token: the summarized rows, then the window's kept rows."""
        # numpy, single-threaded: hundreds of small reductions, where waking torch's thread pool costs more than the sums
        parts = [part.numpy() for part in record.summary]
        if record.codes:
            codes, mask = self._cat(record.codes).numpy(), self._cat(record.clipped).numpy()
            peak = np.abs(codes).max(axis=1).astype(np.int64) if codes.size else np.zeros(codes.shape[0], dtype=np.int64)
            counts = [np.count_nonzero(codes, axis=1), peak, np.count_nonzero(mask, axis=1)]
            parts.append(np.stack(counts, axis=1).astype(np.int64))
        rows = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
        out = np.empty((rows.shape[0], len(SUMMARY_COLUMNS)), dtype=np.int64)
        out[:, 0] = rows[:, 2]
        out[:, 1] = record.width
        out[:, 2] = record.width - rows[:, 0]
        out[:, 3] = rows[:, 1]
        return out

    def neuron_clips(self) -> pl.DataFrame:
        """layer, site, neuron, times_clipped: every neuron that clipped at least once, over every token."""
        frames = []
        for key, record in self.sites.items():
            counts = record.neuron_clips
            if record.codes and record.clipped:  # the window's rows, whose masks are kept
                window = self._cat(record.clipped).sum(dim=0).numpy()
                counts = window if counts is None else counts + window
            if counts is None or not counts.any():
                continue
            neurons = np.flatnonzero(counts)
            layer, site = split_site_key(key)
            frames.append(pl.DataFrame({
                "layer": np.full(len(neurons), layer), "site": [site] * len(neurons),
                "neuron": neurons, "times_clipped": counts[neurons],
            }))
        schema = {"layer": pl.Int64, "site": pl.Utf8, "neuron": pl.Int64, "times_clipped": pl.Int64}
        return pl.concat(frames).cast(schema) if frames else pl.DataFrame(schema=schema)

    def saturated_neurons(self) -> pl.DataFrame:
        """One row per clipped value of the window's tokens: token, site, neuron index, the (clipped) code."""
        frames = []
        first = self.window_start
        for key, record in self.sites.items():
            if record.kind == S.HOST or not record.codes:
                continue
            clipped = self._cat(record.clipped)
            if not clipped.any():
                continue
            codes = self._cat(record.codes)
            layer, site = split_site_key(key)
            where = clipped.nonzero().numpy()
            frames.append(pl.DataFrame({
                "token": where[:, 0] + first, "layer": np.full(len(where), layer), "site": [site] * len(where),
                "neuron": where[:, 1], "code": codes[clipped].numpy().astype(np.int64),
            }))
        schema = {"token": pl.Int64, "layer": pl.Int64, "site": pl.Utf8, "neuron": pl.Int64, "code": pl.Int64}
        return pl.concat(frames).cast(schema) if frames else pl.DataFrame(schema=schema)

    def states(self) -> pl.DataFrame:
        """The MLGRU state codes of every layer and neuron per token of the window (long format)."""
        frames = []
        first = self.window_start
        for key, record in self.sites.items():
            if record.kind != S.STATE or not record.codes:
                continue
            codes = self._cat(record.codes).numpy().astype(np.int64)
            tokens, neurons = codes.shape
            frames.append(
                pl.DataFrame(
                    {
                        "token": np.repeat(np.arange(first, first + tokens), neurons),
                        "layer": np.full(tokens * neurons, split_site_key(key)[0]),
                        "neuron": np.tile(np.arange(neurons), tokens),
                        "code": codes.reshape(-1),
                    }
                )
            )
        return pl.concat(frames) if frames else pl.DataFrame()

    TENSOR_SCHEMA = {"token": pl.Int64, "layer": pl.Int64, "site": pl.String, "neuron": pl.Int64, "value": pl.Float32}

    def tensors(self) -> pl.DataFrame:
        """Every recorded site's dequantized values for the window's tokens, long format (token, site, neuron, value).

        Built as one table: its columns are allocated once at their final length and filled site by site
        (millions of rows at 370M: no per-site frames to concatenate, no Python list of site names).
        `tensor_frames` gives the same rows site by site, for writing without holding them all."""
        if not self.record_tensors:
            raise ValueError("this run was recorded without tensors (record_tensors=False)")
        first = self.window_start
        keys = self._tensor_keys()
        shapes = [(sum(part.shape[0] for part in self.sites[key].codes), self.sites[key].codes[0].shape[1]) for key in keys]
        counts = np.array([tokens * neurons for tokens, neurons in shapes])
        total = int(counts.sum())
        token, layer, neuron = (np.empty(total, dtype=np.int64) for _ in range(3))
        value = np.empty(total, dtype=np.float32)
        names: list[str] = []
        offset = 0
        for key, (tokens, neurons), count in zip(keys, shapes, counts, strict=True):
            rows = slice(offset, offset + count)
            site_layer, site = split_site_key(key)
            names.append(site)
            values = self.site_values(key).numpy()
            token[rows] = np.repeat(np.arange(first, first + tokens), neurons)
            layer[rows] = site_layer
            neuron[rows] = np.tile(np.arange(neurons), tokens)
            value[rows] = values.reshape(-1)
            offset += count
        sites = pl.Series("site", names, dtype=pl.String).gather(np.repeat(np.arange(len(names)), counts))
        return pl.DataFrame({"token": token, "layer": layer, "site": sites, "neuron": neuron, "value": value})

    def _tensor_keys(self) -> list[str]:
        if not self.record_tensors:
            raise ValueError("this run was recorded without tensors (record_tensors=False)")
        keys = [key for key, record in self.sites.items() if record.kind != S.HOST and self.has_values(key)]
        if not keys:
            raise ValueError("no site recorded any values")  # as pl.concat([]) did
        return keys

    def tensor_frames(self) -> Iterator[pl.DataFrame]:
        """The rows of `tensors()`, one site at a time, in the same order and schema."""
        first = self.window_start
        for key in self._tensor_keys():
            values = self.site_values(key).numpy()
            tokens, neurons = values.shape
            site_layer, site = split_site_key(key)
            yield pl.DataFrame({
                "token": np.repeat(np.arange(first, first + tokens), neurons), "layer": np.full(tokens * neurons, site_layer),
                "site": pl.Series("site", [site], dtype=pl.String).gather(np.zeros(tokens * neurons, dtype=np.int64)),
                "neuron": np.tile(np.arange(neurons), tokens), "value": values.reshape(-1),
            })

    def nbytes(self) -> int:
        """Memory held by the per-neuron data and summaries (for the run cache's budget)."""
        total = 0
        for record in self.sites.values():
            total += sum(t.nbytes for t in record.values + record.codes)
            total += sum(t.nbytes for t in record.clipped if not any(t is z for z in self._zero_masks.values()))
            total += sum(s.nbytes for s in record.summary)
        total += sum(t.nbytes for parts in self._rasters.values() for t in parts)
        total += sum(c.messages.nbytes * 3 for chunks in self._activity.values() for c in chunks if c.messages is not None)
        total += sum(c.window_synops.nbytes for chunks in self._activity.values() for c in chunks if c.window_synops is not None)
        total += sum(parts[k][1].nbytes for pending in self._unsynced.values() for _, parts in pending for k in range(len(parts)))
        return total
