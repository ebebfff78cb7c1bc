"""Helpers of the simulation tests: the examples' test files, goldens."""

from __future__ import annotations

from pathlib import Path

from tests.dsl.support import assert_golden  # one golden rule for every suite

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
GOLDEN = Path(__file__).resolve().parent / "golden"

__all__ = ["GOLDEN", "JOURNEYS", "ROOT", "assert_golden"]
