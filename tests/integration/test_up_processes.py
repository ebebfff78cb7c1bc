"""``journeys up --workers 2 --api-processes 2``: two API processes share the
port, ``kill -9`` of one leaves the other answering, ``up`` starts it again,
and every event sent around the crash makes exactly one send."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx

from tests.integration.test_up import _eventually, _outbox, _port, _start, _stop, _wait_up, _worker_pids

SOURCE = """
journey "procs"
  entry event joined_group
  reentry once
  send webhook "hello"
"""
USERS = 30


def _api_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"API process \d+ started \(pid (\d+)\)", log.read_text())]


def _track(base: str, write_key: str, i: int) -> None:
    """A Segment client's send: retried (same messageId) when the connection
    breaks, as the API process holding it may be the one killed."""
    body = {"userId": f"p-{i}", "event": "joined_group", "messageId": f"p-{i}-joined"}
    for attempt in range(20):
        try:
            answer = httpx.post(f"{base}/v1/track", auth=(write_key, ""), json=body, timeout=30)
        except httpx.TransportError:
            time.sleep(0.2 * (attempt + 1))
            continue
        assert answer.status_code in (200, 202), answer.text
        return
    raise AssertionError(f"event {i} never accepted")


def test_two_api_processes_survive_a_kill_9_of_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {"api": _port(), "temporal": _port(), "ui": _port()}
    base = f"http://127.0.0.1:{ports['api']}"
    log = tmp_path / "up.log"
    # a quick sweep: what the killed process stored but did not deliver is the survivor's
    proc = _start(
        data,
        ports,
        log,
        ["--workers", "2", "--api-processes", "2"],
        {"JOURNEYS_REDISPATCH_SECONDS": "2"},
    )
    try:
        _wait_up(proc, log, base)
        first = _api_pids(log)
        assert len(first) == 2 and len(_worker_pids(log)) == 2, log.read_text()[-3000:]
        assert proc.pid not in first
        keys = json.loads((data / "keys.json").read_text())
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        made = httpx.put(f"{base}/v1/templates/hello", json={"body": "hello"}, headers=admin, timeout=30)
        assert made.status_code in (200, 201), made.text
        deployed = httpx.post(f"{base}/v1/journeys", json={"id": "procs", "source": SOURCE}, headers=admin, timeout=60)
        assert deployed.status_code in (200, 201), deployed.text
        # both answer: each has its own pool and Temporal client, and took traffic
        _eventually(lambda: _both_ready(base, first), "both API processes answer /ready", tries=3000)

        for i in range(USERS // 2):
            _track(base, keys["write"], i)
        os.kill(first[0], signal.SIGKILL)
        # SIGKILL is delivered asynchronously: until the kernel has closed the
        # dying process's SO_REUSEPORT socket, a new connection may still be
        # queued on it and reset (CI saw one). Once it is gone, the survivor
        # answers every new connection.
        _eventually(lambda: not _listening(first[0]), "the killed API process's socket is closed")
        for _ in range(10):
            assert httpx.get(f"{base}/health", timeout=30).status_code == 200
        for i in range(USERS // 2, USERS):
            _track(base, keys["write"], i)
        _eventually(lambda: len(_api_pids(log)) == 3, "the killed API process was started again")
        assert re.search(rf"API process 0 \(pid {first[0]}\) exited with -9", log.read_text())

        def sends() -> list[str]:
            return [m["message"]["user_id"] for m in _outbox(data) if m["message"]["template"] == "hello"]

        _eventually(lambda: len(sends()) >= USERS, f"{USERS} welcome sends reached the outbox", tries=1800)
        time.sleep(5)  # more than two sweeps: a duplicate would show by now
        assert len(sends()) == USERS and len(set(sends())) == USERS, sends()
        # the restarted process serves too: the port still takes every request
        _eventually(lambda: _both_ready(base, _api_pids(log)[1:]), "the restarted API process answers", tries=3000)
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "journeys stopped" in log.read_text()


def _both_ready(base: str, pids: list[int]) -> bool:
    """The port answers ``/ready`` (fresh connections, so both processes are
    asked) and each of ``pids`` holds its own listening socket."""
    try:
        answers = [httpx.get(f"{base}/ready", timeout=10).status_code for _ in range(8)]
    except httpx.TransportError:
        return False
    return all(code == 200 for code in answers) and all(_listening(pid) for pid in pids)


def _listening(pid: int) -> bool:
    """The process holds a listening TCP socket (its own ``SO_REUSEPORT`` one)."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return True
    return False
