"""The sigma-delta encoder as one compiled loop (numba): generation's hot path for `delta` messaging.

Why compiled: a delta sender is stepped once per message site and token (14 sites a layer), most
of them right after an int8 GEMM. The five numpy operations of the formula took about 5 us a site on
their own but 12 to 25 us there (measured on 370M: each array operation's dispatch runs cold after
the GEMM), in all about 8 ms of a 33 ms token. One compiled loop over the neurons is one dispatch,
and a prompt's tokens run in the same loop instead of a Python loop per token.

The arithmetic is Lava's Delta with held = act - residue (`inspector.quant.messaging`);
tests/test_messaging.py checks it against Lava's act/residue formula written plainly in torch, and
tests/test_lava_sdn.py against Lava's own `lava.proc.sdn` Delta process.

Importing this module compiles the kernel once for its one signature (about a second) or loads it
from numba's cache (next to this file, or in the user's cache directory when that is read-only;
with neither writable, it compiles for the process alone). `inspector.quant.messaging` imports it
only when a delta sender first runs, so a dense run never loads numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import boolean, int64, void

# codes (B, T, N) and state (B, 2, N) in any memory layout (views of larger buffers are common), the
# outputs sent and received (B, T, N) contiguous: one signature, so one compilation.
_SIGNATURE = void(int64[:, :, :], int64[:, :, :], int64, boolean, int64[:, :, ::1], int64[:, :, ::1])


def _delta_encode(
    codes: np.ndarray, state: np.ndarray, vth: int, cum_error: bool, sent: np.ndarray, received: np.ndarray
) -> None:
    """T tokens of Lava's Delta encoder: fills `sent` and `received` (B, T, N); `state` (held, error)
    is updated in place.

    Per neuron and token: delta = code - held; sent = delta if |delta| >= vth else 0 (cum_error:
    if |error + delta| >= vth, and the error is reset where a message went out); held += sent;
    received = held (what the receivers' Sigma holds).

    The caller allocates the outputs with numpy: arrays numba allocates itself came back as fresh
    pages every call, and faulting them in cost 5x the loop on a 128-token prompt.
    """
    batch, tokens, neurons = codes.shape
    for b in range(batch):
        held, error = state[b, 0], state[b, 1]
        for t in range(tokens):
            code, sent_t, received_t = codes[b, t], sent[b, t], received[b, t]
            for n in range(neurons):
                value = held[n]
                delta = code[n] - value
                if cum_error:  # a multiply by the condition, not a branch: codes change unpredictably
                    accumulated = error[n] + delta
                    delta = delta * (abs(accumulated) >= vth)
                    error[n] = accumulated * (delta == 0)
                else:
                    delta = delta * (abs(delta) >= vth)
                value += delta
                held[n] = value
                sent_t[n] = delta
                received_t[n] = value


try:
    delta_encode = numba.njit(_SIGNATURE, cache=True, nogil=True)(_delta_encode)
except RuntimeError:  # numba finds no writable cache directory: compile for this process only
    delta_encode = numba.njit(_SIGNATURE, cache=False, nogil=True)(_delta_encode)
