"""What a ``HIGH`` attempt gets from its worker: a clean environment, an empty directory of
its own (removed afterwards), and, on a worker running as root, another user.

Directories: each worker process holds ``<base>/worker-<random>/`` (a child directory per
``HIGH`` attempt) and an exclusive ``flock`` on ``<base>/worker-<random>.lock`` for its
lifetime. A worker killed outright (SIGKILL) cannot remove its attempts' directories; the
next worker that starts on the same base finds its lock free and removes them (``open``).
The lock, not a process id, says who is alive: several workers may share a base.

Environment: only ``PATH``, ``LANG``, ``LC_ALL``, ``TZ`` (when the worker has them),
``HOME`` and ``TMPDIR`` (the attempt's directory), and the variables the definition names
in ``securityContext.allowEnv``. The child is started with it (not cleaned up later), so
not even ``/proc/self/environ`` shows the worker's secrets.

User: ``--run-as USER`` on a worker running as root: the child drops to that user (and its
group, no supplementary groups) before it imports the handler; the directory is that
user's. A root worker without ``--run-as`` never runs a ``HIGH`` attempt: it fails,
``RUN_AS_REQUIRED``, not retried (running it as root would defeat the level). A worker
that is not root runs ``HIGH`` attempts as its own user; ``--run-as`` is refused there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

RUN_AS_REQUIRED = "RUN_AS_REQUIRED"  # a HIGH attempt on a root worker without --run-as
KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_BASE = Path(tempfile.gettempdir()) / "taskexec-attempts"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user HIGH attempts run as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> RunAs:
        """``name``'s ids; ValueError if there is no such user or this is not root."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"--run-as: no user named {name!r}") from None
        if os.geteuid() != 0:
            raise ValueError("--run-as needs a worker running as root")
        if entry.pw_uid == 0:
            raise ValueError(f"--run-as: {name!r} is root")
        return cls(name, entry.pw_uid, entry.pw_gid)


class Sandbox:
    """A worker's attempt directories and the rules of HIGH attempts."""

    def __init__(self, base: Path | None = None, run_as: RunAs | None = None) -> None:
        self.base = base or DEFAULT_BASE
        self.run_as = run_as
        self._own: Path | None = None
        self._lock: IO[bytes] | None = None

    def open(self) -> None:
        """Remove what killed workers left under the base; take a directory of our own.
        A base that cannot be written is logged, not fatal: only HIGH attempts need it
        (each then fails with the error, retried by its policy)."""
        try:
            self._take()
        except OSError as exc:
            log.warning("HIGH attempts cannot run: no directory under %s: %s", self.base, exc)

    def _take(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.remove_stale()
        lock_fd, lock_path = tempfile.mkstemp(prefix="worker-", suffix=".lock", dir=self.base)
        self._lock = os.fdopen(lock_fd, "wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._own = Path(lock_path[: -len(".lock")])
        self._own.mkdir(mode=0o711)
        self._own.chmod(0o711)  # the run-as user passes through to its attempt's directory

    def remove_stale(self) -> int:
        """Remove the directories of workers whose lock is free (they died); how many."""
        removed = 0
        for lock_path in self.base.glob("worker-*.lock"):
            with contextlib.suppress(OSError), lock_path.open("rb") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live worker's
                shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
                lock_path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.warning("removed the attempt directories of dead workers (%d)", removed)
        return removed

    def close(self) -> None:
        """Remove our directory and free our lock."""
        if self._own is not None:
            shutil.rmtree(self._own, ignore_errors=True)
            Path(f"{self._own}.lock").unlink(missing_ok=True)
            self._own = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def refusal(self) -> str | None:
        """Why this worker may not run a HIGH attempt (None: it may)."""
        if os.geteuid() == 0 and self.run_as is None:
            return "a HIGH attempt never runs as root: start the worker with --run-as USER"
        return None

    def attempt_dir(self) -> Path:
        """A fresh empty directory for one HIGH attempt, the run-as user's (mode 0700)."""
        if self._own is None:
            self._take()  # raises what stopped it
        assert self._own is not None
        path = Path(tempfile.mkdtemp(prefix="attempt-", dir=self._own))
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)
        return path

    @staticmethod
    def remove(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def environment(home: Path, allow: list[str] | None) -> dict[str, str]:
        """The whole environment of a HIGH attempt in ``home``."""
        names = [*KEPT_VARIABLES, *(allow or [])]
        env = {name: os.environ[name] for name in names if name in os.environ}
        env["HOME"] = env["TMPDIR"] = str(home)
        return env
