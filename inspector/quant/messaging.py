"""Event-driven messaging of graded spikes: dense, sigma-delta, or thresholded (per site group).

On Loihi 2 a neuron that does not send costs nothing, so *what* a neuron sends decides the
energy. Every neuron group of a layer sends graded spikes to other neurons, and each declares a
messaging key in the layer schema (`inspector.schema.LAYER_GROUPS`):

    ifg      (norm_attn)  the i, f and g BitLinear inputs   ifg_out  (proj_ifg)   the i, f, g codes -> MLGRU
    o        (mlgru)      the o_proj input                  o_out    (proj_o)     the o_proj output -> residual add
    gate     (norm_mlp)   the gate_proj (GLU) input         gate_out (proj_gate)  the gate and y codes -> GLU
    down     (glu)        the down_proj input               down_out (proj_down)  the down_proj output -> residual add
    residual (residual)   the layer's output -> the next layer's norm_attn and norm_mlp (or the final norm)

A group's messages are the sites the schema flags `message=True`: into a BitLinear, its `.spikes`;
element-wise, the codes themselves (the receiving neuron reads entry k of the sender's codes).
The final norm (read by the LM head) and the embeddings (sent in) sit on the host side of the
chip's boundary in this version and always travel dense.

Each group has a mode (`QuantConfig.messaging_<group>`) and a threshold `vth` in codes
(`QuantConfig.vth_<group>`):

- `dense`: every nonzero code is sent, every token (zeros are free).
- `delta`: sigma-delta, exactly Lava's `lava.proc.sdn` Delta dynamics (`AbstractDeltaModel`):

      delta   = code - act + residue
      s_out   = delta if |delta| >= vth else 0     (with cum_error: if |error + delta| >= vth)
      residue = delta - s_out;  act = code           (with cum_error: error reset where sent)

  The receiver's Sigma accumulates what arrives, so its synaptic input is W times the sum of the
  received deltas, which is W times `code - residue` (the value the receivers last got): the
  emulator computes that reconstruction directly, the same integers. An element-wise receiver's
  Sigma is the plain sum: it reads `code - residue` in place of the code. At vth <= 1 the residue stays
  0 (every nonzero change is sent), so the receivers get the codes themselves and the outputs are
  bit-identical to `dense`; only neurons whose code changed send.
- `threshold`: a code is sent only when |code| >= vth; otherwise nothing (the receiver sees 0).

The delta state lives from token to token like the MLGRU state, and a new sequence starts from
zero. It is kept as (held, error) per sending neuron, held = act - residue (see `_encode`).
Messaging does not change calibration (which runs the float model) nor any scale: only what the
receivers are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from inspector import schema as S

DENSE, DELTA, THRESHOLD = "dense", "delta", "threshold"
MODES = (DENSE, DELTA, THRESHOLD)


@dataclass(frozen=True)
class MessagingGroup:
    """A sending neuron group of the core map: its message sites, the projections its graded spikes
    feed (none for a group that sends element-wise) and the QuantConfig width of its codes."""

    key: str  # QuantConfig field suffix: messaging_<key>, vth_<key>
    core_group: str  # the core map's group name (inspector.chip.mapper)
    projections: tuple[str, ...]
    label: str
    sites: tuple[str, ...] = ()  # the schema's message sites of the group, in order
    width: str = "spike_bits"  # the QuantConfig width every message site's codes live in


# The schema's groups with a messaging key, in data-flow order.
def _width(group: S.Group) -> str:
    """The one QuantConfig width of a group's message sites (a vth is counted in those codes)."""
    widths = {S.SITE_OF[site].width for site in group.messages}
    if len(widths) != 1:
        raise ValueError(f"the message sites of {group.name} must share one width, got {sorted(widths)}")
    return widths.pop()


GROUPS: dict[str, MessagingGroup] = {
    g.messaging: MessagingGroup(g.messaging, g.name, g.feeds, g.messaging_label, g.messages, _width(g))
    for g in S.MESSAGING_GROUPS
}
# The group sending each message site (a projection's `.spikes`, or an element-wise site).
GROUP_OF_SITE = {site: g for g in GROUPS.values() for site in g.sites}
CORE_GROUPS = {g.core_group: g for g in GROUPS.values()}
GROUP_OF_PROJECTION = {proj: g for g in GROUPS.values() for proj in g.projections}
MODE_FIELDS = tuple(f"messaging_{k}" for k in GROUPS)
VTH_FIELDS = tuple(f"vth_{k}" for k in GROUPS)
MESSAGING_FIELDS = (*MODE_FIELDS, *VTH_FIELDS, "messaging_cum_error")


@dataclass(frozen=True)
class Messaging:
    """One group's setting: mode, threshold (codes) and Lava's cum_error flag."""

    mode: str = DENSE
    vth: int = 0
    cum_error: bool = False

    @property
    def label(self) -> str:
        """"dense", "delta vth=4", "delta vth=4 cum_error", "threshold vth=8"."""
        if self.mode == DENSE:
            return DENSE
        return f"{self.mode} vth={self.vth}" + (" cum_error" if self.cum_error and self.mode == DELTA else "")

    @property
    def stateful(self) -> bool:
        """Whether the sender keeps a state across tokens (delta does; dense and threshold do not)."""
        return self.mode == DELTA

    @property
    def exact(self) -> bool:
        """Whether receivers get exactly the codes (dense; delta with vth <= 1; threshold with vth <= 1)."""
        return self.mode == DENSE or self.vth <= 1


def setting(qc, group: str) -> Messaging:
    """The Messaging of one group (a GROUPS key) under a QuantConfig."""
    return Messaging(getattr(qc, f"messaging_{group}"), getattr(qc, f"vth_{group}"), qc.messaging_cum_error)


def for_projection(qc, projection: str) -> Messaging:
    return setting(qc, GROUP_OF_PROJECTION[projection].key)


def for_site(qc, site: str) -> Messaging:
    """The Messaging of the group that sends a message site (`i_proj.spikes`, `o_proj`, `residual_mlp`)."""
    return setting(qc, GROUP_OF_SITE[site].key)


def event_driven(qc) -> bool:
    """Whether any group sends other than dense."""
    return any(setting(qc, g).mode != DENSE for g in GROUPS)


def any_stateful(qc) -> bool:
    return any(setting(qc, g).stateful for g in GROUPS)


def describe(qc) -> str:
    """A short label of a QuantConfig's messaging: "dense", "delta vth=2 (all groups)" or "o delta vth=8; others dense"."""
    labels = {g: setting(qc, g).label for g in GROUPS}
    if all(label == DENSE for label in labels.values()):
        return DENSE
    if len(set(labels.values())) == 1:
        return f"{next(iter(labels.values()))} (all groups)"
    sending = "; ".join(f"{g} {label}" for g, label in labels.items() if label != DENSE)
    return sending + ("; others dense" if DENSE in labels.values() else "")


# -- the dynamics ------------------------------------------------------------------------------
# Lava's Delta keeps act (the last code) and residue per neuron, but only their difference decides
# what it sends next: delta = code - act + residue = code - held, where held = act - residue is the
# sum of everything sent so far, i.e. exactly what the receivers' Sigma holds. So our encoder keeps
# (held, error): the same messages, one row less to copy per token, and `held` *is* the received
# value. `held` is always a code the sender had at some token (it changes only by taking the current
# code), so it stays within the site's code range (an 8-bit spike stays 8 bits).
HELD, ERROR = 0, 1


def zero_state(batch: int, neurons: int) -> torch.Tensor:
    """A sender's delta state (held, error), all zero: (B, 2, N) int64."""
    return torch.zeros(batch, 2, neurons, dtype=torch.int64)


def _encode(codes: np.ndarray, state: np.ndarray, vth: int, cum_error: bool) -> tuple[np.ndarray, np.ndarray]:
    """T tokens of the Delta encoder on numpy arrays, `state` (B, 2, N) updated in place: (sent, received).

        delta = code - held;  sent = delta where |delta| >= vth   (cum_error: where |error + delta| >= vth,
        held += sent;  received = held                                        and error reset where sent)

    The compiled loop of `inspector.quant.delta_kernel` (numba, loaded on first use: a dense run never
    pays for it). The plain references are Lava's formula in act/residue form (tests/test_messaging.py)
    and Lava's own `lava.proc.sdn` Delta (tests/test_lava_sdn.py).
    """
    from inspector.quant.delta_kernel import delta_encode

    sent, received = np.empty(codes.shape, np.int64), np.empty(codes.shape, np.int64)
    delta_encode(codes.astype(np.int64, copy=False), state, int(vth), bool(cum_error), sent, received)
    return sent, received


def transmit(
    codes: torch.Tensor, m: Messaging, state: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """What a group's neurons send and what their receivers get, for T tokens.

    codes (B, T, N) the senders' codes; state (B, 2, N) for delta (None: a new sequence; not changed).
    Returns (received (B, T, N), sent (B, T, N): the payload of each message, 0 = no message,
    new state (delta) or None). The sequence and the token-by-token calls give the same bits.
    """
    if m.mode == DENSE:
        return codes, codes, None
    if m.mode == THRESHOLD:
        received = codes if m.vth <= 1 else torch.where(codes.abs() >= m.vth, codes, 0)
        return received, received, None
    batch, tokens, neurons = codes.shape
    state = zero_state(batch, neurons) if state is None else state
    if m.exact and not bool(state[:, ERROR].any()):
        # vth <= 1 and no error left: every change is sent, so receivers hold the codes.
        previous = torch.cat([state[:, HELD : HELD + 1], codes[:, :-1]], dim=1)
        new_state = torch.stack([codes[:, -1], state[:, ERROR]], dim=1)
        return codes, codes - previous, new_state
    work = state.numpy().copy()
    sent, received = _encode(codes.numpy(), work, m.vth, m.cum_error)
    return torch.from_numpy(received), torch.from_numpy(sent), torch.from_numpy(work)


def transmit_in_place(codes: torch.Tensor, m: Messaging, state: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """`transmit` under delta with a state (B, 2, N) int64 numpy array that the caller owns (a view of
    a packed buffer), updated in place: (received (B, T, N), sent (B, T, N)).

    Generation's path: one call of the compiled encoder, no copy of the state.
    """
    sent, received = _encode(codes.numpy(), state, m.vth, m.cum_error)
    return torch.from_numpy(received), torch.from_numpy(sent)


def count_messages(codes: np.ndarray | torch.Tensor, mode: str = DENSE, vth: int = 0, cum_error: bool = False) -> np.ndarray:
    """Messages sent per token by neurons with these codes (T, N), from a fresh sequence: (T,) int64.

    The library call for teaching and figures: `count_messages(codes, "delta", 0)` counts the
    neurons whose code changed from the previous token (the first token: nonzero codes).
    """
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (tokens, neurons), got shape {tuple(codes.shape)}")
    if mode not in MODES:
        raise ValueError(f"unknown messaging mode {mode!r}; choose one of {', '.join(MODES)}")
    _, sent, _ = transmit(codes[None], Messaging(mode, int(vth), cum_error))
    return (sent[0] != 0).sum(dim=1).numpy().astype(np.int64)
