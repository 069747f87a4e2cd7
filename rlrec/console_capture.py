"""What a run prints and logs, handed to a listener as it goes (W&B's Logs tab shows it).

``sys.stdout`` and ``sys.stderr`` are wrapped (each write goes on to the real stream, then to the
listener), and a handler on the root logger formats each record as Hydra's console does. Python
level only: what rlrec and the user's code print and log, not what a C library writes to the file
descriptors. The listener only appends to a queue, so a line costs the run well under a
microsecond more.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

#: Hydra's default console format, which the run's own console shows.
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class _Tee:
    """A text stream that writes through and tells the listener."""

    def __init__(self, stream: TextIO, name: str, listener: Callable[[str, str], None]) -> None:
        self._stream, self._name, self._listener = stream, name, listener

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if text:
            self._listener(self._name, text)
        return written

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._stream, attr)


class _Records(logging.Handler):
    def __init__(self, listener: Callable[[str, str], None]) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self._listener = listener

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._listener("stdout", self.format(record) + "\n")
        except Exception:  # never the run's problem
            self.handleError(record)


class ConsoleCapture:
    """Between ``start`` and ``stop``: every print to stdout or stderr and every log record of
    INFO or above goes to ``listener(stream name, text)`` too."""

    def __init__(self, listener: Callable[[str, str], None]) -> None:
        self._listener = listener
        self._handler: _Records | None = None
        self._streams: tuple[Any, Any] | None = None

    def start(self) -> None:
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, "stdout", self._listener)
        sys.stderr = _Tee(sys.stderr, "stderr", self._listener)
        self._handler = _Records(self._listener)
        logging.getLogger().addHandler(self._handler)

    def stop(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler = None
        if self._streams is not None:
            # only our own wrappers are taken off: someone may have wrapped them since
            if isinstance(sys.stdout, _Tee):
                sys.stdout = self._streams[0]
            if isinstance(sys.stderr, _Tee):
                sys.stderr = self._streams[1]
            self._streams = None
