"""A bounded command queue and the thread that runs the model work.

Why a thread of its own: a command takes from a fraction of a second (GPU) to many seconds
(CPU); the executor thread must keep taking images, depth and new commands meanwhile. Why
bounded: a voice front end can send faster than the models answer; the oldest waiting
command is the least likely to still matter, so it is the one answered with a failure.
No rclpy here: the queue and the thread are tested on their own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")


class JobQueue(Generic[J]):
    """Thread-safe FIFO holding at most `maxsize` waiting jobs (the running job is not counted)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._jobs: deque[J] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: J) -> list[J]:
        """Add a job; returns the jobs pushed out (oldest first) to make room. A closed queue
        refuses the job: it comes back in the list, so the caller still answers it.
        """
        with self._cond:
            if self._closed:
                return [job]
            self._jobs.append(job)
            dropped = []
            while len(self._jobs) > self.maxsize:
                dropped.append(self._jobs.popleft())
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> J | None:
        """The oldest job, waiting up to `timeout` s; None when closed and empty, or on timeout."""
        with self._cond:
            if not self._jobs and not self._closed:
                self._cond.wait(timeout)
            return self._jobs.popleft() if self._jobs else None

    def close(self) -> list[J]:
        """Refuse new jobs, wake the worker and return the jobs still waiting (to be answered)."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
            return left

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)


class Worker(Generic[J]):
    """Runs `setup()` once, then `handle(job)` for each job, on one daemon thread.

    setup loads the models (seconds to minutes) off the executor thread, so the node is up and
    taking images meanwhile; jobs that arrive during setup wait in the queue. If handle raises,
    `on_error(job, exc)` answers the job: every job is answered exactly once.
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
        self.ready = threading.Event()  # set once setup has finished (successfully or not)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def _run(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
        except BaseException:  # setup reports its own failure; the worker still answers jobs
            log.exception("worker setup failed")
        finally:
            self.ready.set()
        while True:
            job = self.queue.get(timeout=0.5)
            if job is None:
                if self.queue.closed:
                    return
                continue
            self._busy.set()
            try:
                self._handle(job)
            except BaseException as exc:  # noqa: BLE001 - the job must still be answered
                log.exception("job failed")
                try:
                    self._on_error(job, exc)
                except Exception:
                    log.exception("answering a failed job failed")
            finally:
                self._busy.clear()

    def stop(self, timeout: float = 5.0) -> list[J]:
        """Close the queue, wait for the running job (up to `timeout`) and return the jobs never
        run.
        """
        left = self.queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return left
