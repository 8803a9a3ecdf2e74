"""Progress reporting and cancellation shared by every long operation."""
from __future__ import annotations

import threading

from .errors import JobCancelled


def no_progress(stage: str, done: int, total: int) -> None:
    """Default progress sink: ignore."""


class CancelToken:
    """One flag, set from any thread (UI button, Ctrl-C), checked between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("The job was cancelled; no output was written.")

