"""One writer per output: an exclusive lock on an output name, and a rename that never replaces.

Why: checking "does OUT exist?" at the start of a run and renaming at its end leaves the whole
run in between for a second writer: two replays to the same new OUT both reported success and
the later one silently replaced the other's bag; two resumes of one partial raced for its
files. The lock is ``flock`` on a file beside the output (.{name}.iterprime-lock), held for the
writer's life: the OS releases it when the process ends in any way (SIGKILL included), so a
killed run never blocks the next. The final rename uses ``renameat2(RENAME_NOREPLACE)``, so a
file that appeared at the output name during the run is never replaced by accident.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from pathlib import Path

from .bag_types import BagError

LOCK_SUFFIX = ".iterprime-lock"
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_held: dict[str, list[int]] = {}  # lock file -> [descriptor, holders in this process]
_held_guard = threading.Lock()


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The lock file of an output name (a hidden file beside it)."""
    p = Path(output)
    return p.with_name(f".{p.name}{LOCK_SUFFIX}")


class OutputLock:
    """Exclusive lock on one output name for as long as it is held (re-entrant in one process).

    The command line takes it before loading models and the bag writer takes it again when it
    opens: the second take in the same process shares the first, so the lock is released when
    the last holder lets go. Another process gets a BagError naming the holder's process id.
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = Path(output)
        self.path = lock_path(output)
        self._key = str(self.path.resolve())
        self._holding = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (BagError when another process holds it)."""
        if self._holding:
            return
        with _held_guard:
            entry = _held.get(self._key)
            if entry is None:
                entry = _held[self._key] = [self._take(), 0]
            entry[1] += 1
        self._holding = True

    def release(self) -> None:
        """Let go; the last holder in this process removes the file and unlocks it."""
        if not self._holding:
            return
        self._holding = False
        with _held_guard:
            entry = _held[self._key]
            entry[1] -= 1
            if entry[1]:
                return
            del _held[self._key]
        try:
            self.path.unlink()  # while still locked: nobody else holds this inode
        except OSError:
            pass
        os.close(entry[0])

    def _take(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BagError(f"cannot write to {self.path.parent}: {exc.strerror or exc}") from exc
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise BagError(f"cannot lock {self.output}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise BagError(
                    f"another run (process {holder}) is writing {self.output} right now; "
                    "wait for it to end or choose another output name"
                ) from None
            try:  # a holder that let go meanwhile removed the file: lock the new one instead
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename, failing with FileExistsError when `target` exists (atomically where the kernel
    and file system offer renameat2, else by a hard link for files or an exclusive mkdir check).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is not None:
        rc = func(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        )
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists already", str(target))
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(target))
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "exists already", str(target))
    if source.is_dir():
        os.rename(source, target)
    else:
        os.link(source, target)
        os.unlink(source)
