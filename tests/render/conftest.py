"""Fixtures for the diagram tests."""

from __future__ import annotations

import pytest
from render_samples import audience_journey, sample_journey

from dsl.ir import Journey


@pytest.fixture
def sample() -> Journey:
    return sample_journey()


@pytest.fixture
def audience() -> Journey:
    return audience_journey()
