"""`journeys up` as an operator runs it: one command brings up the dev server,
a worker process and the API; events flow to the outbox; a worker process that
dies is started again; Ctrl-C stops everything; a restart on the same data
directory keeps every run."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

SOURCE = """
journey "up test"
  entry event joined_group
  reentry once
  send webhook "hello"
  wait for event order_paid up to 30d:
    on event:
      send webhook "thanks"
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(
    data: Path, ports: dict[str, int], log: Path, extra: Sequence[str] = (), env_extra: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")} | (env_extra or {})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "up",
            "--data-dir",
            str(data),
            "--port",
            str(ports["api"]),
            "--temporal-port",
            str(ports["temporal"]),
            "--ui-port",
            str(ports["ui"]),
            *extra,
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_up(proc: subprocess.Popen, log: Path, base: str) -> None:
    for _ in range(3000):  # a bound, not a measurement: a start takes a minute on a busy 2-core box
        if proc.poll() is not None:
            raise AssertionError(f"journeys up exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200 and "journeys is up" in log.read_text():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"journeys up never came up:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(timeout=60)


def _outbox(data: Path) -> list[dict]:
    path = data / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _worker_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"worker process \d+ started \(pid (\d+)\)", log.read_text())]


def _eventually(predicate, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def test_up_runs_everything_and_a_restart_keeps_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {"api": _port(), "temporal": _port(), "ui": _port()}
    base = f"http://127.0.0.1:{ports['api']}"
    log = tmp_path / "up.log"

    proc = _start(data, ports, log)
    try:
        _wait_up(proc, log, base)
        keys = json.loads((data / "keys.json").read_text())
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        for name in ("hello", "thanks"):
            made = httpx.post(f"{base}/v1/templates", json={"name": name, "body": f"{name} 你好"}, headers=admin)
            assert made.status_code == 201, made.text
        # journeys as code: deployed from a file with the CLI, pulled back unchanged
        path = tmp_path / "up-test.journey"
        path.write_text(SOURCE.lstrip("\n"), encoding="utf-8")
        cli = {**os.environ, "JOURNEYS_SERVER": base, "JOURNEYS_KEY": keys["admin"]}
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "deploy", str(path)], env=cli, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "deployed up-test version 1" in done.stdout
        pulled = subprocess.run(
            [sys.executable, "-m", "api.cli", "pull", "up-test"], env=cli, capture_output=True, text=True, timeout=60
        )
        assert (pulled.returncode, pulled.stdout) == (0, path.read_text(encoding="utf-8"))
        track = httpx.post(
            f"{base}/v1/track",
            auth=(keys["write"], ""),
            json={"userId": "m-1", "event": "joined_group", "messageId": "m-1-joined"},
        )
        assert track.json() == {"success": True}
        _eventually(
            lambda: [m["message"]["template"] for m in _outbox(data)] == ["hello"], "the welcome reached the outbox"
        )
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "journeys stopped" in log.read_text()

    # Same data directory: the run is still waiting for order_paid and answers it,
    # even after its worker process was killed: `up` starts another.
    log.write_text("")
    proc = _start(data, ports, log)
    try:
        _wait_up(proc, log, base)
        first = _worker_pids(log)
        assert len(first) == 1, log.read_text()[-3000:]
        os.kill(first[0], signal.SIGKILL)
        _eventually(lambda: len(_worker_pids(log)) == 2, "the killed worker process was started again")
        assert "exited with -9" in log.read_text()
        track = httpx.post(
            f"{base}/v1/track",
            auth=(keys["write"], ""),
            json={"userId": "m-1", "event": "order_paid", "messageId": "m-1-paid"},
        )
        assert track.status_code == 200
        _eventually(
            lambda: [m["message"]["template"] for m in _outbox(data)] == ["hello", "thanks"],
            "the run survived the restart",
        )
        assert _worker_pids(log)[-1] not in first
    finally:
        assert _stop(proc) == 0
    assert "journeys stopped" in log.read_text()
