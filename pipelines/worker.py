"""One GPU worker: a thread that owns a ModelManager and runs jobs one at a time, first in first out.

Every front door hands its jobs to ``Worker.submit`` and gets a ``Ticket`` back::

    ticket = worker.submit(job, subscribers=[bar.update], output_dir="outputs")
    ticket.position()   # 0 running, 1 next, ... None when finished
    ticket.cancel()     # queued: never starts; running: the engine stops within one denoising step
    ticket.result()     # blocks; the run's result, or its exception re-raised

Rules:

* Jobs run in the order their ``submit`` calls took their place in the queue (ids increase in
  that order), so results come back in submission order.
* A job that raises (anything) marks its ticket ``failed``; the worker goes on with the next.
* After a cancelled or failed job the worker gives freed memory back before the ticket finishes
  (the traceback's frame locals are cleared, then ``memory.apply.release_memory``: garbage, then
  the CUDA allocator's cache). Loaded models stay cached in the manager for the next job.
* On submit the ticket's events get ``Note("queued at position N")`` before any event of the run.
* ``shutdown`` cancels every queued job and stops the thread after the running one (which it may
  cancel too).

No UI code; torch and the engine are imported only when the first job runs.
"""
from __future__ import annotations

import itertools
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .errors import JobCancelled, KinetographError
from .events import Events, Subscriber
from .progress import CancelToken

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class Ticket:
    """A submitted job: its state, its events, its cancel token and, once finished, its outcome."""

    def __init__(self, worker: Worker, ticket_id: int, job: Any, events: Events, options: dict[str, Any]) -> None:
        self.id = ticket_id
        self.job = job
        self.state = QUEUED
        self.events = events
        self.cancel_token = CancelToken()
        self.error: BaseException | None = None
        self._worker = worker
        self._options = options
        self._value: Any = None
        self._finished = threading.Event()
        self._announced = threading.Event()  # the "queued at position N" note went out

    def __repr__(self) -> str:
        return f"<Ticket {self.id} {self.state}>"

    def position(self) -> int | None:
        """0 while running, n while n-th in the queue (1 = next), None once finished."""
        return self._worker._position(self)

    def cancel(self) -> bool:
        """Queued: removed from the queue, never starts. Running: its cancel token is set and the engine
        stops at its next check. False when the job had already finished."""
        return self._worker._cancel(self)

    def done(self) -> bool:
        return self._finished.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job; return its result or raise its exception (``JobCancelled`` if cancelled).
        Raises ``TimeoutError`` if it has not finished within ``timeout`` seconds."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"Job {self.id} has not finished within {timeout} s (it is {self.state}).")
        if self.error is not None:
            raise self.error
        return self._value

    # -- set by the worker only ----------------------------------------------------------
    def _finish(self, state: str, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self.error, self.state = value, error, state
        self._finished.set()


class Worker:
    """One thread, one ModelManager, a FIFO queue of jobs run one at a time."""

    def __init__(self, run: Callable[..., Any] | None = None, manager: Any = None) -> None:
        self._run = run
        self._manager = manager
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Ticket] = deque()
        self._running: Ticket | None = None
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ public
    @property
    def manager(self) -> Any:
        """The worker's ModelManager (the engine's process-wide one unless one was given)."""
        if self._manager is None:
            from .engine import default_manager

            self._manager = default_manager()
        return self._manager

    def submit(self, job: Any, subscribers: Iterable[Subscriber] = (), preview_every: int = 0,
               **options: Any) -> Ticket:
        """Queue ``job``; ``options`` go to the run function as keyword arguments. Thread-safe."""
        events = Events(list(subscribers), preview_every=int(preview_every))
        with self._lock:
            if self._closed:
                raise KinetographError("The worker has been shut down; it takes no more jobs.")
            ticket = Ticket(self, next(self._ids), job, events, dict(options))
            self._queue.append(ticket)
            position = len(self._queue)
            self._start_thread()
            self._wake.notify_all()
        try:
            events.note(f"queued at position {position}")
        except JobCancelled:  # a subscriber's cancel button was already pressed
            ticket.cancel()
        finally:
            ticket._announced.set()
        return ticket

    def queue_positions(self) -> dict[int, int]:
        """Ticket id -> position: 0 the running job, 1 the next, ..."""
        with self._lock:
            positions = {t.id: i for i, t in enumerate(self._queue, start=1)}
            if self._running is not None:
                positions[self._running.id] = 0
            return positions

    def shutdown(self, wait: bool = True, cancel_running: bool = False) -> None:
        """Cancel every queued job, stop the thread after the running one (cancelled too with
        ``cancel_running``); with ``wait``, return once the thread has stopped."""
        with self._lock:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            for ticket in dropped:
                ticket._finish(CANCELLED, error=JobCancelled("The job was cancelled before it started: "
                                                             "the worker shut down."))
            if cancel_running and self._running is not None:
                self._running.cancel_token.cancel()
            self._wake.notify_all()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    # ------------------------------------------------------------------ tickets
    def _position(self, ticket: Ticket) -> int | None:
        with self._lock:
            if ticket is self._running:
                return 0
            if ticket.state == QUEUED:
                try:
                    return self._queue.index(ticket) + 1
                except ValueError:
                    pass
            return None

    def _cancel(self, ticket: Ticket) -> bool:
        with self._lock:
            if ticket.state == QUEUED and ticket in self._queue:
                self._queue.remove(ticket)
                ticket.cancel_token.cancel()
                ticket._finish(CANCELLED, error=JobCancelled("The job was cancelled before it started."))
                return True
            if ticket is self._running:
                ticket.cancel_token.cancel()
                return True
            return False

    # ------------------------------------------------------------------ thread
    def _start_thread(self) -> None:
        """Called with the lock held."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="kinetograph-worker", daemon=True)
            self._thread.start()

    def _next(self) -> Ticket | None:
        """The next ticket, marked running; None once shut down with nothing queued."""
        with self._wake:
            while not self._queue:
                if self._closed:
                    return None
                self._wake.wait()
            ticket = self._queue.popleft()
            ticket.state = RUNNING
            self._running = ticket
            return ticket

    def _loop(self) -> None:
        while True:
            ticket = self._next()
            if ticket is None:
                return
            state, value, error = self._execute(ticket)
            if error is not None:
                _drop_frame_locals(error)  # the tensors a failed run held die now, not with the ticket
                _free_memory()
            with self._lock:  # not running any more and finished, in one step for position()
                self._running = None
                ticket._finish(state, value, error)

    def _execute(self, ticket: Ticket) -> tuple[str, Any, BaseException | None]:
        ticket._announced.wait()  # the queue note precedes the run's own events
        try:
            ticket.cancel_token.raise_if_cancelled()  # cancelled between leaving the queue and starting
            run = self._run
            if run is None:
                from .engine import run
            value = run(ticket.job, events=ticket.events, cancel=ticket.cancel_token, manager=self.manager,
                        **ticket._options)
        except JobCancelled as exc:
            return CANCELLED, None, exc
        except BaseException as exc:  # noqa: BLE001 - any failure ends the job, never the worker
            return FAILED, None, exc
        return DONE, value, None


def _drop_frame_locals(error: BaseException) -> None:
    """Clear the local variables of the finished frames in an exception's traceback (and in the
    exceptions it chains), keeping the traceback's lines: a kept exception would otherwise keep every
    latent and activation the failed run held."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _free_memory() -> None:
    """Give a cancelled or failed job's memory back (device cache only; cached models stay)."""
    try:
        from .memory.apply import release_memory

        release_memory()
    except Exception:  # freeing memory must never stop the worker
        pass
