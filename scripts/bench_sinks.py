"""A sink for the benchmarks: the wall time of the episode loop alone.

``+sinks.clock._target_=bench_sinks.LoopClock +sinks.clock.out=<file>`` writes, when the run ends,
the seconds from the first finished episode to the last (import, start and the other sinks' final
flush fall outside) and how many episodes that spans.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


class LoopClock:
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.first = self.last = 0.0
        self.episodes = 0

    def open(self, run) -> None:
        pass

    def write(self, record) -> None:
        self.last = time.perf_counter()
        if not self.episodes:
            self.first = self.last
        self.episodes += 1

    def close(self, summary) -> None:
        loop = {"episodes": self.episodes - 1, "loop_s": self.last - self.first}
        self.out.write_text(json.dumps(loop))
