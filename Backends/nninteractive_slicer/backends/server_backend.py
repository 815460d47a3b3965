"""What the two server backends share: a session on a server that may forget it, restored from a journal.

Both the remote backend (this project's server) and the official one (an official nninteractive-server)
keep their state in a *server session*. The server may *lose* it: forget it (reaped after a timeout,
restarted, evicted), or hold a state that may differ from the journal (a call failed after the server may
have run it). Every confirmed call is recorded in a :class:`~.journal.SessionJournal`, so the backend can
*restore* a lost session: claim a new one, replay the journal into it as far as the next call needs
(:data:`~.journal.Restore`), and run the call once more. The user sees nothing but a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from ..errors import BackendUnavailableError
from ..interface import Backend
from .journal import Restore, SessionJournal

T = TypeVar("T")

# A connection attempt that gets no answer by then is reported as unreachable; a reply may take the
# backend's (longer) read timeout.
CONNECT_TIMEOUT_S = 5.0


@dataclass
class RecoveryStats:
    """How often the server lost our session, for tests, benchmarks and the log."""

    recoveries: int = 0  # lost server sessions restored


class ServerBackend(Backend):
    """A backend whose session lives on a server; subclasses claim sessions and talk to the server."""

    url: str
    # Failures after which the server session may hold a state we do not know, so the next call restores it
    # first: any, unless the server detects a lost call itself (a revision that no longer matches).
    failures_losing_session: tuple[type[BaseException], ...] = (BaseException,)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._journal = SessionJournal()
        self._lost = True  # no server session yet, or one we cannot trust: restore before the next call
        self._log = logging.getLogger(type(self).__module__)
        self.stats = RecoveryStats()

    def _call(self, op: Callable[[], T], restore: Restore = "all") -> T:
        """Run ``op`` in a server session that holds what ``restore`` names; if the server lost it, restore it
        and run ``op`` once more. A call that fails changes nothing of ours."""
        lost_errors = self._session_lost_errors()
        with self._lock, self._typed_errors():
            try:
                if self._lost:
                    self._restore(restore)
                try:
                    return self._attempt(op)
                except lost_errors as lost:
                    self._log.warning("The server at %s dropped the session (%s); restoring it.", self.url, lost)
                    self._lose_session()
                    self._restore(restore)
                    self.stats.recoveries += 1
                return self._attempt(op)
            except lost_errors as again:
                self._lose_session()
                raise BackendUnavailableError(
                    f"The server at {self.url} lost the session again while it was restored ({again}): it may be "
                    "restarting or running with very short timeouts; try again in a moment.") from again
            except self.failures_losing_session:
                self._lose_session()
                raise

    def _restore(self, restore: Restore) -> None:
        if self._closed:
            raise BackendUnavailableError(f"This connection to the server at {self.url} was closed: connect again.")
        started = time.perf_counter()
        try:
            replayed = self._claim_session(restore)
        except BaseException:
            self._lose_session()  # half restored: the next call starts over, never uses it as if whole
            raise
        self._lost = False
        if restore != "nothing" and self._journal.image is not None:
            self._log.warning("Restored the session at %s in %.1f s: %d prompt(s) replayed.", self.url,
                              time.perf_counter() - started, replayed)

    def _lose_session(self) -> None:
        """Stop using the server session: the next call claims a new one and restores it."""
        self._lost = True

    # -- hooks ---------------------------------------------------------------------------------------------
    @abstractmethod
    def _claim_session(self, restore: Restore) -> int:
        """Claim a new server session and replay the journal into it up to ``restore``; returns the prompts
        replayed."""

    @abstractmethod
    def _session_lost_errors(self) -> tuple[type[BaseException], ...]:
        """What a call raises when the server lost our session."""

    @abstractmethod
    def _typed_errors(self) -> AbstractContextManager[object]:
        """A context that turns the transport's exceptions into typed errors."""

    def _attempt(self, op: Callable[[], T]) -> T:
        """One try of ``op``."""
        return op()
