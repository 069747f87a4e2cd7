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


def require_module(name: str, install: str) -> None:
    """``require`` a Python package the tests import by ``name``."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        require(f"the Python package {name}", install)


#: Where a socket may listen here: the loopback address, as IPv4, IPv4-mapped IPv6 or IPv6.
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def listening() -> set[tuple[str, str]]:
    """Every listening TCP socket on this machine: (local address:port, its processes)."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        require("ss", "apt-get install -y iproute2")
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            found.add((fields[3], fields[5] if len(fields) > 5 else ""))
    return found


class LoopbackOnly:
    """Watches the sockets that start listening while it runs (``ss -ltnp`` every 0.1 s, so
    that short-lived ones are seen too); ``check`` fails if one listened beyond 127.0.0.1."""

    def __init__(self) -> None:
        import threading

        self.before = {address for address, _ in listening()}
        self.seen: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen |= {s for s in listening() if s[0] not in self.before}
            self._stop.wait(0.1)

    def check(self, *, some: bool = True) -> set[tuple[str, str]]:
        """The new listeners so far, all on the loopback address (and, with ``some``, at least
        one: a watch that saw nothing proves nothing)."""
        self.seen |= {s for s in listening() if s[0] not in self.before}
        outside = sorted(s for s in self.seen if not s[0].startswith(LOOPBACK))
        assert not outside, f"listening beyond 127.0.0.1: {outside}"
        assert self.seen or not some, "nothing started listening while watched"
        return self.seen

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
