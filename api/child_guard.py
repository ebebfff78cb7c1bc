"""Children of ``journeys up`` die with it, and ``up`` does not start twice.

``kill -9`` of ``up`` runs none of its shutdown code. Without help its
children are reparented and live on: the dev server keeps the ports (a
restart then attaches to the orphan) and the worker processes keep sending
with the settings they were started with. Three measures, each covering what
the others cannot:

- ``die_with_parent`` (``preexec_fn`` of each worker process): Linux
  ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel signals the worker the
  moment ``up`` is gone; each worker is also the leader of its own process
  group, which ``WorkerProcesses.stop`` kills whole.
- ``Guard``: the dev server is spawned by Temporal's SDK (its Rust core), where
  no ``preexec_fn`` can be added. So ``up`` starts one small guard process
  (``python -m api.child_guard``) and writes it the pid of every child; the
  guard reads its standard input until end of file, which comes when ``up``
  exits *however* it exits (the kernel closes the pipe). On a clean exit ``up``
  says ``exit`` first and the guard kills nothing; otherwise it sends SIGTERM
  to every child still running (the same process: the start time in
  ``/proc/<pid>/stat`` must match, so a reused pid is never hit), then
  SIGKILL after ``GRACE_SECONDS``.
- ``taken_ports``: before starting anything ``up`` checks that its ports are
  free, so a leftover server (from any cause) is named instead of joined.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 10.0


def die_with_parent_hook(*, new_group: bool = True) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process
    dies (Linux; elsewhere a no-op) and, with ``new_group``, the leader of a
    process group of its own (set here: uvloop's subprocess_exec has no
    ``process_group``). Made in the parent, so it knows the pid to expect: a
    parent that died before the ``prctl`` took effect would never send the
    signal, so the child then ends itself."""
    parent = os.getpid()

    def hook() -> None:
        if new_group:
            os.setpgid(0, 0)
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


@dataclass(frozen=True)
class Port:
    port: int
    what: str  # "API", "Temporal", "Temporal Web UI"
    option: str  # the flag that changes it
    host: str = "127.0.0.1"


def _in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # what uvicorn and the dev server set: a port in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def taken_ports(ports: list[Port]) -> list[str]:
    """One sentence per port that something already listens on."""
    return [
        f"port {p.port} ({p.what}, {p.option}) is already in use on {p.host}: another `journeys up` "
        f"(or another program) is running there. Stop it (Ctrl-C in its terminal, or kill its process, "
        f"e.g. `lsof -i :{p.port}` or `ss -ltnp 'sport = :{p.port}'` names it), or pick another port "
        f"with {p.option}."
        for p in ports
        if _in_use(p.host, p.port)
    ]


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started (clock ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid`` (from ``/proc``; empty where there is none)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


class Guard:
    """The parent's end: starts the guard process and tells it each child."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "api.child_guard"],
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_root(), os.environ.get("PYTHONPATH")) if p)},
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def watch(self, pid: int) -> None:
        started = _start_time(pid)
        if started is None or self._proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(f"{pid} {started}\n".encode())
            self._proc.stdin.flush()

    def release(self) -> None:
        """A clean shutdown: the children are stopped already; kill nothing."""
        if self._proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(b"exit\n")
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)


def _root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _alive(pid: int, started: str) -> bool:
    return _start_time(pid) == started


def _guard_main() -> int:
    """The guard process: collect ``pid start-time`` lines until end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for `up`, which then says "exit"
    watched: dict[int, str] = {}
    for line in sys.stdin:
        if line.strip() == "exit":
            return 0
        pid, _, started = line.strip().partition(" ")
        if pid.isdigit() and started:
            watched[int(pid)] = started
    # end of input without "exit": the parent died without shutting down
    live = [pid for pid, started in watched.items() if _alive(pid, started)]
    for pid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = [pid for pid in live if _alive(pid, watched[pid]) and not _zombie(pid)]
    for pid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return 0


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


if __name__ == "__main__":
    sys.exit(_guard_main())
