"""Loads ``platform/supervisor.py`` by file path: ``platform/`` is deliberately not a package
(it would shadow the standard library's ``platform``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SUPERVISOR = Path(__file__).resolve().parents[2] / "platform" / "supervisor.py"


@pytest.fixture(scope="session")
def supervisor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("platform_supervisor", SUPERVISOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module
