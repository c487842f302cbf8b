"""A bounded command queue and the one thread that runs the model work.

Why a thread of its own: a command takes from a fraction of a second (GPU) to many seconds
(CPU); the executor must keep taking images, depth, new commands and lifecycle/parameter
requests meanwhile. Why bounded: a voice front end can send faster than the models answer; the
oldest waiting command is the least likely to still matter, so it is the one answered with a
failure. Why `call`: loading and freeing the models (lifecycle activate/deactivate) must happen
on the same thread as the commands and between two of them, never during one. Why `hold`: while
the node is starting, commands wait; while it is inactive, none is run.
No rclpy here: the queue and the thread are tested on their own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")


class QueueClosedError(RuntimeError):
    """The queue is closed (the node is shutting down): no call can run any more."""


class _Call:
    """A function to run on the worker thread between two jobs, with its future."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            self.future.set_exception(exc)


class JobQueue(Generic[J]):
    """Thread-safe FIFO holding at most `maxsize` waiting jobs (the running job is not counted).

    Calls (`call`) go before any job and are never dropped; a held queue hands out calls only.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._jobs: deque[J] = deque()
        self._calls: deque[_Call] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._held = False

    def put(self, job: J) -> list[J]:
        """Add a job; returns the jobs pushed out (oldest first) to make room. A closed queue
        refuses the job: it comes back in the list, so the caller still answers it.
        """
        with self._cond:
            if self._closed:
                return [job]
            self._jobs.append(job)
            dropped = self._trim()
            self._cond.notify_all()
            return dropped

    def _trim(self) -> list[J]:
        dropped = []
        while len(self._jobs) > self.maxsize:
            dropped.append(self._jobs.popleft())
        return dropped

    def resize(self, maxsize: int) -> list[J]:
        """A new limit (queue_size set at run time); returns the oldest jobs that no longer fit."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        with self._cond:
            self.maxsize = maxsize
            return self._trim()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run fn() on the worker thread before the next job; its future has the result."""
        item = _Call(fn)
        with self._cond:
            if self._closed:
                item.future.set_exception(QueueClosedError("the worker has stopped"))
                return item.future
            self._calls.append(item)
            self._cond.notify_all()
        return item.future

    def hold(self) -> None:
        """Keep jobs waiting (calls still run) until release()."""
        with self._cond:
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    @property
    def held(self) -> bool:
        return self._held

    def remove(self, job: J) -> bool:
        """Take one waiting job out (a cancelled goal); False when it is not waiting any more."""
        with self._cond:
            try:
                self._jobs.remove(job)
            except ValueError:
                return False
            return True

    def position(self, job: J) -> int:
        """1 for the next job to run, ...; 0 when the job is not waiting."""
        with self._cond:
            for i, waiting in enumerate(self._jobs):
                if waiting is job:
                    return i + 1
            return 0

    def drain(self) -> list[J]:
        """Take every waiting job out (oldest first), to be answered by the caller."""
        with self._cond:
            left = list(self._jobs)
            self._jobs.clear()
            return left

    def get(self, timeout: float | None = None) -> J | _Call | None:
        """A call, else the oldest job (unless held), waiting up to `timeout` s; None when closed
        and empty, or on timeout.
        """
        with self._cond:
            if not self._ready() and not self._closed:
                self._cond.wait(timeout)
            if self._calls:
                return self._calls.popleft()
            if self._jobs and not self._held:
                return self._jobs.popleft()
            return None

    def _ready(self) -> bool:
        return bool(self._calls) or (bool(self._jobs) and not self._held)

    def close(self) -> list[J]:
        """Refuse new jobs, wake the worker and return the jobs still waiting (to be answered).

        Calls not yet run fail with QueueClosedError.
        """
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            calls = list(self._calls)
            self._calls.clear()
            self._cond.notify_all()
        for item in calls:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(QueueClosedError("the worker has stopped"))
        return left

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)


class Worker(Generic[J]):
    """Runs `setup()` once, then `handle(job)` for each job and each call, on one daemon thread.

    If handle raises, `on_error(job, exc)` answers the job: every job is answered exactly once.
    `current` is the job being run (the node answers it at shutdown without waiting for it).
    """

    def __init__(
        self,
        queue: JobQueue[J],
        handle: Callable[[J], None],
        on_error: Callable[[J, BaseException], None],
        setup: Callable[[], None] | None = None,
        name: str = "iterprime-worker",
    ) -> None:
        self.queue = queue
        self._handle = handle
        self._on_error = on_error
        self._setup = setup
        self._busy = threading.Event()
        self.current: J | None = None
        self.ready = threading.Event()  # set once setup has finished (successfully or not)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run fn() on this thread between two jobs (models load and unload here)."""
        return self.queue.call(fn)

    def run(self, fn: Callable[[], Any], closed: Any = None) -> Any:
        """call(fn) and wait for its result; `closed` when the worker has stopped.

        Why: a signal may stop the worker while a lifecycle transition waits on it (activate
        loading the models); the transition then ends with what `closed` says, not with a
        traceback from a node that is only shutting down.
        """
        try:
            return self.call(fn).result()
        except QueueClosedError:
            return closed

    def _run(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
        except BaseException:  # setup reports its own failure; the worker still answers jobs
            log.exception("worker setup failed")
        finally:
            self.ready.set()
        while True:
            item = self.queue.get(timeout=0.5)
            if item is None:
                if self.queue.closed:
                    return
                continue
            if isinstance(item, _Call):
                item.run()
                continue
            self._busy.set()
            self.current = item
            try:
                self._handle(item)
            except BaseException as exc:  # noqa: BLE001 - the job must still be answered
                log.exception("job failed")
                try:
                    self._on_error(item, exc)
                except Exception:
                    log.exception("answering a failed job failed")
            finally:
                self.current = None
                self._busy.clear()

    def stop(self, timeout: float = 5.0) -> list[J]:
        """Close the queue, wait for the running job (up to `timeout`) and return the jobs never
        run.
        """
        left = self.queue.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return left
