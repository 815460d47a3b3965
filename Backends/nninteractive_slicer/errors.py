"""Typed backend errors.

Every error carries a message written for the person at the keyboard: what went wrong and
what to do about it. Callers show ``str(error)``; nothing here needs a traceback to be useful.
A backend that raises one of these has left its state (and the caller's mask) unchanged.
"""

from __future__ import annotations


class BackendError(Exception):
    """Base class of every error a backend raises on purpose."""


class InvalidPromptError(BackendError, ValueError):
    """The prompt cannot be applied: outside the image, wrong shape or dtype, unsupported type."""


class UndoError(InvalidPromptError):
    """An undo or redo of more steps than the backend keeps; nothing was changed."""


class NoImageError(BackendError):
    """A prompt or mask arrived before any image was set."""


class BackendUnavailableError(BackendError):
    """The backend cannot run at all: missing packages, model not found, server unreachable."""


class AuthenticationError(BackendUnavailableError):
    """The server refused the API key."""


class ServerBusyError(BackendUnavailableError):
    """The server is at capacity; ``retry_after`` says when to try again (seconds)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OutOfMemoryError(BackendError):
    """The device ran out of memory for this prompt; the backend freed its cache and is still usable."""
