"""A SHA-256 of a checkpoint's weight bytes, computed while the checkpoint loads.

Why: the calibration cache (`inspector.quant.calibration_cache`) is keyed by the weights themselves; a
header or a file size would miss a changed weight. hashlib releases the GIL, so the hash runs in a
background thread beside the loader and costs no wall time on a 2-core machine.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Optional

CHUNK_BYTES = 16 * 2**20


class WeightDigest:
    """SHA-256 over the bytes of a checkpoint's weight files (names and sizes included), computed in a
    background thread from the moment it is made; `hexdigest()` waits for it."""

    def __init__(self, files: list[Path]):
        self.files = sorted({Path(f) for f in files})
        self._digest: Optional[str] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="weight-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            for path in self.files:
                size = path.stat().st_size
                digest.update(f"{path.name}\0{size}\0".encode())
                if size == 0:
                    continue
                # Read into one reusable buffer, not mapped: mapped pages would count in this process's resident
                # memory a second time (the loader maps the same file), the whole file's worth at the peak.
                buffer = bytearray(CHUNK_BYTES)
                view = memoryview(buffer)
                with open(path, "rb", buffering=0) as handle:
                    while read := handle.readinto(buffer):
                        digest.update(view[:read])
            self._digest = digest.hexdigest()
        except (OSError, ValueError) as exc:  # unreadable now: no cache for this model, never a wrong one
            self._error = exc

    def hexdigest(self) -> Optional[str]:
        """The digest, or None if the files could not be read."""
        self._thread.join()
        return self._digest

    def __getstate__(self) -> dict:
        """A copy sent to another process (a Ray sweep worker gets the LoadedModel) carries the finished
        digest, not the thread."""
        self.hexdigest()
        return {"files": self.files, "_digest": self._digest, "_error": self._error}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread = threading.Thread(target=lambda: None, name="weight-digest")
        self._thread.start()
