"""``journeys deploy`` and ``journeys pull`` against a real running API (the
app on uvicorn, a free port, SQLite): a journey whose tests pass is
deployed with its diff and version, unchanged text says so, a failing
journey test deploys nothing (``--skip-tests`` deploys anyway), a journey
with errors prints the language's diagnostics exactly as ``journeys check``
does, keys without the role are refused, and pull writes back what was
deployed. The functions run in this process; one deploy and one pull run
as the ``journeys`` command."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from dsl.cli import cmd_check
from engine import catalog
from engine.store import Store
from runtime import remote_cli
from runtime.remote_cli import cmd_deploy, cmd_pull
from tests.api.conftest import ADMIN, OPERATOR, VIEWER, LiveServer, make_settings

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = """\
journey "{name}"
  entry api
  send sms "{template}"
"""
TESTS = """\
[[case]]
name = "gets the SMS"
expect = ["sends sms hello within 1m"]
[case.user]
identities = {{ phone = "13800000001" }}
"""
BROKEN = """\
journey "cli broken"
  entry api
  send sms "hello" on capped defer up to 90d
  goto nowhere
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    tmp = tmp_path_factory.mktemp("cli-api")
    settings = make_settings(tmp, "cli-deploy", log_level="WARNING")
    store = Store(settings.database_url)
    store.migrate()
    with LiveServer(create_app(settings, store=store)) as url:
        yield url, store
    store.dispose()


def _journey(tmp: Path, name: str, template: str = "hello", *, tests: bool = True) -> Path:
    path = tmp / f"{name.replace(' ', '_')}.journey"
    path.write_text(JOURNEY.format(name=name, template=template), encoding="utf-8")
    if tests:
        path.with_name(path.name.removesuffix(".journey") + ".test.toml").write_text(TESTS.format(), encoding="utf-8")
    return path


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    remote_cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def _deploy(url: str, *argv: str, key: str = OPERATOR) -> tuple[int, str]:
    out = io.StringIO()
    code = cmd_deploy(_args("deploy", *argv, "--server", url, "--key", key), out)
    return code, out.getvalue()


def _pull(url: str, *argv: str, key: str = VIEWER) -> tuple[int, str]:
    out = io.StringIO()
    code = cmd_pull(_args("pull", *argv, "--server", url, "--key", key), out)
    return code, out.getvalue()


def test_deploy_tests_diffs_and_deploys_then_pull_reads_it_back(live, tmp_path: Path) -> None:
    url, store = live
    path = _journey(tmp_path, "cli welcome")
    code, out = _deploy(url, str(path))
    assert code == 0, out
    assert f"ok    {path.with_name('cli_welcome.test.toml')} :: gets the SMS" in out  # its tests ran first
    assert f"{path}: new journey cli-welcome" in out
    assert out.rstrip().endswith(f"{path}: deployed cli-welcome version 1 (active)")
    assert catalog.get_version(store, "cli-welcome").source == path.read_text(encoding="utf-8")

    code, out = _deploy(url, str(path), "--skip-tests")
    assert code == 0, out
    assert "same text as the deployed cli-welcome" in out and "unchanged, cli-welcome is at version 1" in out

    path.write_text(path.read_text(encoding="utf-8") + '  wait 1d\n  send sms "hello"\n', encoding="utf-8")
    code, out = _deploy(url, str(path))
    assert code == 0, out
    assert "--- cli-welcome (deployed)" in out and '+  wait 1d\n+  send sms "hello"\n' in out
    assert "deployed cli-welcome version 2" in out

    code, out = _pull(url, "cli-welcome")
    assert (code, out) == (0, path.read_text(encoding="utf-8"))
    pulled = tmp_path / "pulled.journey"
    code, out = _pull(url, "cli-welcome", "-o", str(pulled))
    assert code == 0 and "wrote" in out and "version 2" in out
    assert pulled.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert _pull(url, "nope") == (1, f"journeys pull: no journey 'nope' on {url}\n")
    # an older version, as it was deployed
    code, out = _pull(url, "cli-welcome", "--version", "1")
    assert (code, out) == (0, catalog.get_version(store, "cli-welcome", 1).source)
    assert "wait 1d" not in out
    assert _pull(url, "cli-welcome", "--version", "9") == (
        1,
        f"journeys pull: no journey 'cli-welcome' version 9 on {url}\n",
    )


def test_a_failing_journey_test_deploys_nothing(live, tmp_path: Path) -> None:
    url, store = live
    path = _journey(tmp_path, "cli changed", template="bye")  # its test expects hello
    code, out = _deploy(url, str(path))
    assert code == 1, out
    assert "FAIL" in out and "expected: sends sms hello within 1m" in out
    assert "a journey test failed: nothing deployed" in out
    assert catalog.get_version(store, "cli-changed") is None
    code, out = _deploy(url, str(path), "--skip-tests")
    assert code == 0 and "journey tests skipped" in out and "deployed cli-changed version 1" in out


def test_errors_print_as_journeys_check_prints_them(live, tmp_path: Path) -> None:
    url, _ = live
    path = tmp_path / "broken.journey"
    path.write_text(BROKEN, encoding="utf-8")
    code, out = _deploy(url, str(path))  # no tests beside it
    assert code == 1, out
    checked = io.StringIO()
    assert cmd_check(argparse.Namespace(paths=[str(path)], global_daily_limit=None), checked) == 1
    diagnostics = checked.getvalue().rsplit("checked 1 file", 1)[0]
    assert diagnostics and f"{path}:3:" in diagnostics
    assert f"{path}: new journey cli-broken\n" + diagnostics in out  # the server's errors, over the local text
    assert f"{path}: not deployed: the journey has" in out


def test_keys_and_servers_that_refuse(live, tmp_path: Path) -> None:
    url, _ = live
    path = _journey(tmp_path, "cli keys", tests=False)
    code, out = _deploy(url, str(path), key=VIEWER)
    assert code == 1 and "the key may not do this" in out
    code, out = _deploy(url, str(path), key="wrong")
    assert code == 1 and "refused the key" in out and "wrong" not in out.replace(str(path), "")
    code, out = _deploy("http://127.0.0.1:9", str(path), key=ADMIN)  # the discard port: nothing listens
    assert code == 2 and "cannot reach http://127.0.0.1:9" in out
    code, out = _deploy(url, str(tmp_path / "missing.journey"))
    assert code == 2 and "cannot read" in out


def test_the_journeys_command(live, tmp_path: Path) -> None:
    url, _ = live
    path = _journey(tmp_path, "cli command")
    env = {**os.environ, "JOURNEYS_SERVER": url, "JOURNEYS_KEY": OPERATOR}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "deploy", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deployed cli-command version 1" in done.stdout
    pulled = subprocess.run(
        [sys.executable, "-m", "api.cli", "pull", "cli-command"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (pulled.returncode, pulled.stdout) == (0, path.read_text(encoding="utf-8"))
