"""``journeys simulate`` and ``journeys test`` as a process: exit codes,
the failing case's expected-vs-actual output, ``--json``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .support import JOURNEYS, ROOT

NAME = "01_new_user_first_order"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.simulate_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_journeys_test_exits_0_when_passing_and_1_when_a_case_fails(tmp_path: Path) -> None:
    shutil.copyfile(JOURNEYS / f"{NAME}.test.toml", tmp_path / f"{NAME}.test.toml")
    source = (JOURNEYS / f"{NAME}.journey").read_text(encoding="utf-8")
    (tmp_path / f"{NAME}.journey").write_text(source, encoding="utf-8")
    passing = _run("test", str(tmp_path))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "6 passed, 0 failed in 1 file(s)" in passing.stdout

    (tmp_path / f"{NAME}.journey").write_text(source.replace('"welcome_coupon"', '"welcome"'), encoding="utf-8")
    failing = _run("test", str(tmp_path))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "FAIL" in failing.stdout and "  expected: sends wecom welcome_coupon within 1m" in failing.stdout
    assert "send WeCom: welcome → sent via wecom" in failing.stdout  # the actual timeline


def test_simulate_json_and_a_user_file(tmp_path: Path) -> None:
    user = tmp_path / "vip.toml"
    user.write_text('identities = { phone = "13800000003" }\ntags = ["visited"]\n', encoding="utf-8")
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"at": "+1d2h", "name": "order_paid", "properties": {"amount": 120}}]))
    done = _run("simulate", str(JOURNEYS / f"{NAME}.journey"), "--user", str(user), "--events", str(events), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    (case,) = result["cases"]
    assert case["name"] == "vip" and case["ended"] == "not entered"  # the entry's where wants channel wecom_group
    text = _run("simulate", str(JOURNEYS / f"{NAME}.journey"), "--cases", str(JOURNEYS / f"{NAME}.test.toml"))
    assert text.returncode == 0, text.stdout + text.stderr
    assert "+1d2h     Tue 11:00  event order_paid {amount: 120}" in text.stdout


def test_simulate_says_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    done = _run("simulate", str(JOURNEYS / f"{NAME}.journey"), "--for", "500d")
    assert done.returncode == 2 and "at most 400d" in done.stdout


def test_simulate_forces_variants_and_runs_the_matrix(tmp_path: Path) -> None:
    journey = str(JOURNEYS / "10_package_card.journey")
    typo = _run("simulate", journey, "--variant", "split-gift-coupon=voucher")
    assert typo.returncode == 2
    assert "split 'split-gift-coupon' has no variant 'voucher' (it has gift, coupon)" in typo.stdout
    assert _run("simulate", journey, "--variant", "gift").returncode == 2
    user = tmp_path / "buyer.toml"
    user.write_text('identities = { wecom_external_userid = "wm-10" }\nentry = { source = "package_card" }\n')
    forced = _run("simulate", journey, "--user", str(user), "--variant", "split-gift-coupon=coupon")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "split → variant coupon (forced)" in forced.stdout
    assert "package_card_coupon → sent" in forced.stdout
    matrix = _run("simulate", journey, "--user", str(user), "--matrix", "--json")
    assert matrix.returncode == 0, matrix.stdout + matrix.stderr
    result = json.loads(matrix.stdout)
    assert [c["name"] for c in result["cases"]] == [
        "buyer · split-gift-coupon gift",
        "buyer · split-gift-coupon coupon",
    ]
    assert "send-wecom-package_card_coupon" not in result["never_reached"]
