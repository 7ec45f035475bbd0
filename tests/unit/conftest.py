"""Fixtures for in-process tests: tursid's control API in this process over a temporary TURSI_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.control_app import ControlApp
from tursi.core.hardware import HardwareProfile, detect_cached


@pytest.fixture(scope="session")
def hardware(tmp_path_factory: pytest.TempPathFactory) -> HardwareProfile:
    """This machine's profile, probed once for the session (py-cpuinfo is slow)."""
    return detect_cached(tmp_path_factory.mktemp("hardware"))


@pytest.fixture
def control(tmp_path: Path, hardware: HardwareProfile) -> Iterator[ControlApp]:
    """tursid's application in process, over tmp_path/home, on 127.0.0.1 without a token."""
    app = ControlApp(tmp_path / "home", hardware)
    yield app
    app.close()
