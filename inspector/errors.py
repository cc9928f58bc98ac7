"""User-facing errors: each names what was wrong and where, so the UI and CLI can show it as is."""

from __future__ import annotations


class InspectorError(Exception):
    """Base of every error the app shows to a user instead of a traceback."""


class CheckpointError(InspectorError):
    """A checkpoint directory the loader cannot handle: names the file and, where known, the key."""

    def __init__(self, file: str, key: str | None, problem: str):
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}" + (f" [{key}]" if key else "")
        super().__init__(f"{where}: {problem}")


class TokenizerError(InspectorError):
    """A tokenizer file that is missing, malformed or of a kind we do not support."""


class PromptError(InspectorError):
    """A prompt or generation setting that cannot be run (empty, too long, out of range)."""


class BackendUnavailableError(InspectorError):
    """A backend that cannot run here (Lava not importable, no lava-loihi or Loihi 2 host): says what is missing."""
