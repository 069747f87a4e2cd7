"""System programs and libraries some tests need: skip without them, fail under
``RLREC_REQUIRE_ALL=1`` (CI installs them first)."""

from __future__ import annotations

import ctypes.util
import os

import pytest


def require(what: str, install: str) -> None:
    """Skip (fail under ``RLREC_REQUIRE_ALL=1``) a test whose system program is missing."""
    message = f"{what} is not installed here: {install}"
    if os.environ.get("RLREC_REQUIRE_ALL") == "1":
        pytest.fail(f"RLREC_REQUIRE_ALL=1 and {message}")
    pytest.skip(message)


def require_library(name: str, what: str, install: str) -> None:
    """``require`` a shared library the dynamic loader finds by ``name`` (``EGL``: libEGL)."""
    if ctypes.util.find_library(name) is None:
        require(what, install)
