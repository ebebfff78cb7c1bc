"""``kill -9`` of ``journeys up`` takes its children with it (dev server,
worker processes), so a restart does not attach to an orphaned server or
leave workers sending with old settings; and ``up`` refuses a taken port
with a message that names it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from api.child_guard import children_of
from tests.integration.test_up import _port, _start, _wait_up, _worker_pids


def _gone(pid: int) -> bool:
    """Exited (a zombie no one reaps yet counts: it runs nothing, holds no port)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for(predicate, what: str, seconds: float = 45.0) -> None:
    deadline = time.monotonic() + seconds  # a bound on the wait, not a measurement
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


def test_kill_9_of_up_takes_the_dev_server_and_workers_along(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {"api": _port(), "temporal": _port(), "ui": _port()}
    log = tmp_path / "up.log"
    proc = _start(data, ports, log)
    try:
        _wait_up(proc, log, f"http://127.0.0.1:{ports['api']}")
        children = children_of(proc.pid)
        workers = _worker_pids(log)
        assert len(workers) == 1 and workers[0] in children, (children, workers)
        assert len(children) >= 3, children  # the dev server, the worker, the guard
        assert not _free(ports["temporal"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _wait_for(lambda: all(_gone(pid) for pid in children), f"children {children} of the killed `up` ended")
    _wait_for(lambda: _free(ports["temporal"]) and _free(ports["ui"]), "the dev server's ports are free again")


def test_up_refuses_a_taken_port_and_says_which(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "up",
                "--data-dir",
                str(tmp_path / "d"),
                "--temporal-port",
                str(taken),
                "--port",
                str(_port()),
                "--ui-port",
                str(_port()),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"port {taken} (Temporal, --temporal-port) is already in use" in done.stderr, done.stderr
    assert "journeys is up" not in done.stdout
    assert not (tmp_path / "d" / "temporal.db").exists()  # nothing was started
