"""The worker: one thread, FIFO, cancel queued or running jobs, failures never stop it.

Most tests inject a fake ``run`` that records what it was called with and can be held on a gate,
so jobs are forced to wait in the queue (a worker that ran jobs out of order, started a cancelled
job or died on an exception fails them). One end-to-end test runs the real engine.
"""
from __future__ import annotations

import inspect
import threading
import time

import pytest

from pipelines.errors import JobCancelled, KinetographError
from pipelines.events import Note, Progress
from pipelines.worker import Ticket, Worker

TIMEOUT = 10  # seconds; every wait is bounded so a broken worker fails instead of hanging


class FakeRun:
    """A run function: records calls in order; jobs listed in ``hold`` wait until ``release()``."""

    def __init__(self, hold=(), fail=None):
        self.calls = []  # jobs, in the order run was called
        self.kwargs = []
        self.started = {}  # job -> threading.Event set when its run began
        self.gate = threading.Event()
        self.hold = set(hold)
        self.fail = dict(fail or {})  # job -> exception to raise
        self.lock = threading.Lock()

    def started_event(self, job):
        with self.lock:
            return self.started.setdefault(job, threading.Event())

    def release(self):
        self.gate.set()

    def __call__(self, job, events, cancel, manager, **options):
        with self.lock:
            self.calls.append(job)
            self.kwargs.append(dict(options, manager=manager, cancel=cancel, events=events))
        self.started_event(job).set()
        events.progress("denoise", 0, 1)
        if job in self.hold:
            assert self.gate.wait(TIMEOUT), "test gate never opened"
        if job in self.fail:
            raise self.fail[job]
        if isinstance(job, str) and job.startswith("loop"):
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:  # an engine: checks the token between steps
                cancel.raise_if_cancelled()
                time.sleep(0.002)
            raise AssertionError("the cancel token was never set")
        events.progress("denoise", 1, 1)
        return f"result of {job}"


def _wait(event: threading.Event, what: str):
    assert event.wait(TIMEOUT), f"timed out waiting for {what}"


@pytest.fixture
def freed(monkeypatch):
    """Counts release_memory calls (the worker frees device memory after failed/cancelled jobs)."""
    from pipelines.memory import apply

    calls = []
    monkeypatch.setattr(apply, "release_memory", lambda: calls.append(1))
    return calls


def test_jobs_from_many_threads_run_in_submission_order():
    run = FakeRun(hold={"first"})
    worker = Worker(run=run, manager="the-manager")
    first = worker.submit("first")
    _wait(run.started_event("first"), "the first job to start")  # the others must queue behind it

    submitted, tickets, lock = [], {}, threading.Lock()
    barrier = threading.Barrier(4)

    def submitter(n):
        barrier.wait()
        for k in range(2):
            job = f"job-{n}-{k}"
            with lock:  # the order submit returned in, as the worker must see it
                tickets[job] = worker.submit(job)
                submitted.append(job)
            time.sleep(0.001)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert len(submitted) == 8
    # while the first job is held, every other job is waiting, in submit order
    positions = worker.queue_positions()
    assert positions[first.id] == 0
    assert [positions[tickets[j].id] for j in submitted] == list(range(1, 9))

    finished = []
    for job in submitted:  # collect completion order via the tickets' own events
        tickets[job].events.subscribe(lambda e, job=job: finished.append(job) if e == Progress(
            "denoise", 1, 1) else None)
    run.release()
    assert first.result(TIMEOUT) == "result of first"
    assert [tickets[j].result(TIMEOUT) for j in submitted] == [f"result of {j}" for j in submitted]
    assert run.calls == ["first", *submitted]
    assert finished == submitted
    ids = [tickets[j].id for j in submitted]
    assert ids == sorted(ids) and first.id < ids[0]
    assert all(tickets[j].state == "done" and tickets[j].done() and tickets[j].position() is None
               for j in submitted)
    assert all(kw["manager"] == "the-manager" for kw in run.kwargs)
    worker.shutdown()


def test_a_cancelled_queued_job_never_starts(freed):
    run = FakeRun(hold={"a"})
    worker = Worker(run=run, manager=object())
    a = worker.submit("a")
    b = worker.submit("b")
    c = worker.submit("c")
    _wait(run.started_event("a"), "job a to start")
    assert b.cancel() is True
    assert b.state == "cancelled" and b.done() and b.position() is None
    assert c.position() == 1
    assert b.id not in worker.queue_positions()
    run.release()
    assert c.result(TIMEOUT) == "result of c"
    with pytest.raises(JobCancelled):
        b.result(0)
    assert run.calls == ["a", "c"]  # b's run was never called
    assert b.cancel() is False  # already finished
    assert a.state == c.state == "done"
    worker.shutdown()


def test_cancelling_a_running_job_stops_it_and_the_next_job_runs(freed):
    run = FakeRun()
    worker = Worker(run=run, manager=object())
    looping = worker.submit("loop-1")
    after = worker.submit("after")
    _wait(run.started_event("loop-1"), "the looping job to start")
    assert looping.position() == 0 and looping.state == "running"
    assert after.position() == 1
    assert looping.cancel() is True
    with pytest.raises(JobCancelled):
        looping.result(TIMEOUT)
    assert looping.state == "cancelled" and looping.position() is None
    assert freed, "memory was not freed after the cancelled job"
    assert after.result(TIMEOUT) == "result of after"
    assert run.calls == ["loop-1", "after"]
    worker.shutdown()


def test_failing_jobs_leave_the_worker_alive(freed):
    boom = RuntimeError("boom")
    user_error = KinetographError("Frames must be 8k+1.")
    run = FakeRun(fail={"crash": boom, "bad": user_error})
    worker = Worker(run=run, manager=object())
    crash = worker.submit("crash")
    bad = worker.submit("bad")
    fine = worker.submit("fine")
    assert fine.result(TIMEOUT) == "result of fine"
    assert crash.state == bad.state == "failed"
    with pytest.raises(RuntimeError) as raised:
        crash.result(0)
    assert raised.value is boom
    with pytest.raises(KinetographError) as raised:
        bad.result(0)
    assert raised.value is user_error and not isinstance(raised.value, JobCancelled)
    assert crash.error is boom and fine.error is None
    assert len(freed) == 2  # once per failed job, none for the good one
    assert run.calls == ["crash", "bad", "fine"]
    assert worker.submit("later").result(TIMEOUT) == "result of later"  # still alive
    worker.shutdown()


def test_queue_positions_while_jobs_wait():
    run = FakeRun(hold={"j0"})
    worker = Worker(run=run, manager=object())
    notes = {}

    def noter(job):
        notes[job] = []
        return lambda event: notes[job].append(event.text) if isinstance(event, Note) else None

    t0 = worker.submit("j0", subscribers=[noter("j0")])
    _wait(run.started_event("j0"), "j0 to start")
    t1, t2, t3 = (worker.submit(j, subscribers=[noter(j)]) for j in ("j1", "j2", "j3"))
    assert worker.queue_positions() == {t0.id: 0, t1.id: 1, t2.id: 2, t3.id: 3}
    assert [t.position() for t in (t0, t1, t2, t3)] == [0, 1, 2, 3]
    assert [t.state for t in (t0, t1, t2, t3)] == ["running", "queued", "queued", "queued"]
    assert notes == {"j0": ["queued at position 1"], "j1": ["queued at position 1"],
                     "j2": ["queued at position 2"], "j3": ["queued at position 3"]}
    t2.cancel()
    assert worker.queue_positions() == {t0.id: 0, t1.id: 1, t3.id: 2}
    assert t3.position() == 2
    run.release()
    t3.result(TIMEOUT)
    assert worker.queue_positions() == {}
    assert [t.position() for t in (t0, t1, t2, t3)] == [None] * 4
    worker.shutdown()


def test_events_options_and_preview_reach_the_run():
    run = FakeRun()
    worker = Worker(run=run, manager="m")
    seen = []
    ticket = worker.submit("job", subscribers=[seen.append], preview_every=3, output_dir="/tmp/x", overwrite=True)
    late = []
    ticket.events.subscribe(late.append)  # a subscriber added after submit
    assert ticket.result(TIMEOUT) == "result of job"
    kwargs = run.kwargs[0]
    assert kwargs["output_dir"] == "/tmp/x" and kwargs["overwrite"] is True and kwargs["manager"] == "m"
    assert kwargs["events"] is ticket.events and ticket.events.preview_every == 3
    assert kwargs["cancel"] is ticket.cancel_token
    assert seen[0] == Note("queued at position 1")  # the queue note comes before the run's events
    assert seen[1:] == [Progress("denoise", 0, 1), Progress("denoise", 1, 1)]
    assert Progress("denoise", 1, 1) in late
    worker.shutdown()


def test_shutdown_cancels_queued_jobs_and_stops_the_thread():
    run = FakeRun(hold={"running"})
    worker = Worker(run=run, manager=object())
    running = worker.submit("running")
    _wait(run.started_event("running"), "the first job to start")
    queued = [worker.submit(f"q{i}") for i in range(3)]
    stopper = threading.Thread(target=worker.shutdown)  # waits for the running job
    stopper.start()
    for ticket in queued:
        with pytest.raises(JobCancelled):
            ticket.result(TIMEOUT)
        assert ticket.state == "cancelled"
    assert running.state == "running"
    run.release()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert running.result(0) == "result of running"
    assert run.calls == ["running"]
    assert not worker._thread.is_alive()
    with pytest.raises(KinetographError):
        worker.submit("too late")


def test_shutdown_can_cancel_the_running_job():
    run = FakeRun()
    worker = Worker(run=run, manager=object())
    looping = worker.submit("loop-2")
    _wait(run.started_event("loop-2"), "the looping job to start")
    worker.shutdown(wait=True, cancel_running=True)
    assert looping.state == "cancelled"
    assert not worker._thread.is_alive()


def test_result_times_out_while_the_job_waits():
    run = FakeRun(hold={"slow"})
    worker = Worker(run=run, manager=object())
    ticket = worker.submit("slow")
    with pytest.raises(TimeoutError):
        ticket.result(timeout=0.05)
    assert not ticket.done()
    run.release()
    assert ticket.result(TIMEOUT) == "result of slow"
    worker.shutdown()


def test_defaults_are_the_engines_run_and_manager(monkeypatch):
    from pipelines import engine

    calls = []
    monkeypatch.setattr(engine, "run", lambda job, **kw: calls.append((job, kw)) or "ran")
    monkeypatch.setattr(engine, "default_manager", lambda: "process manager")
    worker = Worker()
    assert worker.submit("job", output_dir="out").result(TIMEOUT) == "ran"
    job, kwargs = calls[0]
    assert job == "job" and kwargs["manager"] == "process manager" and kwargs["output_dir"] == "out"
    worker.shutdown()


def test_a_subscriber_pressing_cancel_on_the_queue_note_cancels_the_job():
    run = FakeRun()
    worker = Worker(run=run, manager=object())

    def cancel_button(event):
        raise JobCancelled("pressed")

    ticket = worker.submit("job", subscribers=[cancel_button])
    assert isinstance(ticket, Ticket)
    with pytest.raises(JobCancelled):
        ticket.result(TIMEOUT)
    worker.shutdown()
    assert run.calls == []  # never started (or, if already taken from the queue, stopped before run)


# ------------------------------------------------------------------------ the real engine
def _engine_takes_events() -> bool:
    from pipelines import engine

    return "events" in inspect.signature(engine.run).parameters


@pytest.mark.slow
@pytest.mark.skipif(not _engine_takes_events(), reason="engine.run does not take events= yet "
                    "(it takes a progress callback); runs once the engine's events signature lands")
def test_end_to_end_with_the_engine(tmp_path):
    from pathlib import Path

    from pipelines.jobspec import JobSpec
    from pipelines.models import ModelManager

    job = JobSpec(task="t2v", model="tiny-ltx", prompt="a fox", frames=9, width=64, height=64, steps=2, seed=1)
    worker = Worker(manager=ModelManager())
    cancelled_dir, done_dir = tmp_path / "cancelled", tmp_path / "done"
    holder = {}

    def cancel_on_first_progress(event):  # a front door's cancel button, pressed mid-job
        if isinstance(event, Progress):
            holder["ticket"].cancel()

    holder["ticket"] = first = worker.submit(job, subscribers=[cancel_on_first_progress], output_dir=cancelled_dir)
    events = []
    second = worker.submit(job, subscribers=[events.append], output_dir=done_dir)
    with pytest.raises(JobCancelled):
        first.result(timeout=600)
    assert first.state == "cancelled"
    assert not list(cancelled_dir.rglob("*.mp4"))  # a cancelled job leaves no video behind

    result = second.result(timeout=600)
    assert second.state == "done"
    assert Path(result.path).is_file() and Path(result.path).stat().st_size > 0
    assert Path(result.path).resolve().is_relative_to(done_dir.resolve())
    assert (result.frame_count, result.width, result.height, result.seed) == (9, 64, 64, 1)
    assert isinstance(events[0], Note) and events[0].text.startswith("queued at position ")
    assert any(isinstance(e, Progress) for e in events)
    assert worker.queue_positions() == {}
    worker.shutdown()
