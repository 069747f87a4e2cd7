"""A tracker's hooks in a process of their own: ``python -m rlrec.sinks.tracker_process FD``.

A thread of the run's process does the tracker's Python work (protobuf, HTTP clients) while
holding the GIL, and the episode loop waits for it meanwhile: cheap for TensorBoard (7 us an
episode), more than a CartPole episode for W&B (140 us). In a process of its own the work runs on
another core; the run's thread only pickles a batch about once a second (about a microsecond an
episode) and waits for the answer with the GIL released. The price is the process's memory.

The process is started from a clean interpreter (not forked: a fork would copy the run's pipes and
threads; not multiprocessing's spawn: that imports the run's ``__main__`` and Hydra with it), talks
over a socket pair, ignores Ctrl-C and SIGTERM (the run decides when the tracker ends), and exits
when the socket closes, so a killed run leaves no tracker process behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

#: How much lower the process's scheduling priority is than the run's.
NICENESS = 10
#: Seconds the run waits for the process to exit after the tracker finished.
EXIT_TIMEOUT_S = 30.0


class StartFailed(Exception):
    """The tracker's ``start`` raised, in its process; the words say what."""


class TrackerProcess:
    """The process that runs ``tracker``'s hooks: ``begin``, then ``handle`` per batch."""

    def __init__(self, tracker: Any) -> None:
        ours, theirs = socket.socketpair()
        # the run's import path: the tracker's class imports there as it does here
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(tracker)  # as constructed: its settings, nothing opened yet

    def begin(self, run: Any, earlier: dict[str, Any] | None) -> None:
        """The tracker's ``begin`` in the process; its error raised here (a ``ConfigError`` as
        it is, anything else as ``StartFailed`` with the same words)."""
        reply = self._call(("begin", (run, earlier)))
        if "error" in reply or "failed" in reply:
            self.stop()
            raise reply["error"] if "error" in reply else StartFailed(reply["failed"])

    def handle(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        """The tracker's ``handle(items)`` in the process."""
        return self._call(("handle", items))

    def stop(self) -> None:
        """Close the socket (the process exits when it sees it) and wait for the process."""
        self._conn.close()
        try:
            self._process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _call(self, message: tuple[str, Any]) -> dict[str, Any]:
        self._conn.send(message)
        return self._conn.recv()  # EOFError if the process died


def main() -> None:
    """The process: take the tracker, then answer each message until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the episode loop comes first: where cores are short, the tracker (and the helpers it
    # starts, W&B's service) catches up when one is free, and at the end
    os.nice(NICENESS)
    # a library's prints (MLflow's "View run" line) go nowhere: the run's own stdout may be a
    # pipe that is gone by now (a killed run), and a print into it would fail the tracker
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    from rlrec.errors import ConfigError

    conn = Connection(int(sys.argv[1]))
    try:
        tracker = conn.recv()
    except (EOFError, OSError):
        return
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the run closed the socket, or is gone
            return
        if kind == "begin":
            try:
                tracker.begin(*payload)
                conn.send({})
            except ConfigError as err:
                conn.send({"error": err})
            except Exception as err:  # not every exception pickles: send its words
                conn.send({"failed": f"{type(err).__name__}: {err}"})
        else:
            conn.send(tracker.handle(payload))


if __name__ == "__main__":
    main()
