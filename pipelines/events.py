"""Events: what a running job tells the world, to any number of subscribers.

The engine never calls a front door. It emits typed events on an ``Events`` object; the CLI's
bar, the ComfyUI node's ProgressBar and the Gradio page each subscribe a small function.

* ``Progress(stage, done, total, within)``: ``within`` holds the enclosing stages, outermost
  first, as ``(stage, done, total)`` triples, so a generation run once per pair of frames
  reports "denoise 3/8 within interpolate 5/40". ``fraction`` is the whole job's share done,
  computed here once, so no front door computes nested progress itself.
* ``Preview(frames, step, total)``: small RGB uint8 ``T×h×w×3`` frames of the video as it forms.
* ``Partial(path, what)``: a file already safely on disk (a finished segment, a final output).
* ``Note(text)``: something the user should know (a rounded frame count, a memory fallback).

A subscriber that raises does not stop the job: the error is kept in ``Events.errors``.
A ``JobCancelled`` raised by a subscriber is the one exception that passes (a front door's
cancel button may be checked there, as ComfyUI's interrupt flag is).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import JobCancelled


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    within: tuple[tuple[str, int, int], ...] = ()

    @property
    def fraction(self) -> float:
        """Share of the whole job done, 0..1: each enclosing stage's done steps plus this one's
        share of the step in progress."""
        share = self.done / self.total if self.total else 1.0
        for _stage, done, total in reversed(self.within):
            share = (done + share) / total if total else 1.0
        return min(1.0, max(0.0, share))


@dataclass(frozen=True)
class Preview:
    frames: Any  # numpy uint8 T×h×w×3
    step: int
    total: int
    within: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class Partial:
    path: str
    what: str


@dataclass(frozen=True)
class Note:
    text: str


Event = Progress | Preview | Partial | Note
Subscriber = Callable[[Event], None]


@dataclass
class Events:
    """Fan-out of a job's events to its subscribers; ``nested`` gives the child of one step."""

    subscribers: list[Subscriber] = field(default_factory=list)
    within: tuple[tuple[str, int, int], ...] = ()
    preview_every: int = 0  # denoising steps between previews; 0: no previews
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def subscribe(self, subscriber: Subscriber) -> Events:
        with self._lock:
            self.subscribers.append(subscriber)
        return self

    def emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self.subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except JobCancelled:
                raise
            except Exception as exc:  # a broken subscriber (a closed browser tab) never stops the job
                self.errors.append(exc)

    # -- shorthands the engine uses ------------------------------------------------------
    def progress(self, stage: str, done: int, total: int) -> None:
        self.emit(Progress(stage, int(done), int(total), self.within))

    def preview(self, frames, step: int, total: int) -> None:
        self.emit(Preview(frames, int(step), int(total), self.within))

    def partial(self, path, what: str) -> None:
        self.emit(Partial(str(path), what))

    def note(self, text: str) -> None:
        self.emit(Note(text))

    def wants_preview(self, step: int) -> bool:
        """Whether denoising step ``step`` (1-based) should produce a preview."""
        return self.preview_every > 0 and bool(self.subscribers) and step % self.preview_every == 0

    def nested(self, stage: str, done: int, total: int) -> Events:
        """Events of the work inside step ``done`` (0-based) of ``total`` of ``stage``: the same
        subscribers, every progress event carrying the enclosing stage."""
        child = Events(self.subscribers, (*self.within, (stage, int(done), int(total))), self.preview_every,
                       self.errors)
        child._lock = self._lock
        return child


def as_events(events: Events | Callable[..., Any] | None) -> Events:
    """Accept an Events object, None, or an old-style ``progress(stage, done, total)`` function."""
    if isinstance(events, Events):
        return events
    result = Events()
    if events is not None:
        legacy = events

        def forward(event: Event) -> None:
            if isinstance(event, Progress) and not event.within:
                legacy(event.stage, event.done, event.total)

        result.subscribe(forward)
    return result
