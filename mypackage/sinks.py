"""A user's own sink, as the README shows it: ``open``, ``write`` and ``close`` will do."""

import json
from pathlib import Path


class JsonLines:
    """One JSON line per finished episode in ``<run>/<file>``, and the summary as the last line."""

    def __init__(self, file: str = "episodes.jsonl"):
        self.file = file

    def open(self, run):
        self.out = (Path(run.run_dir) / self.file).open("a")

    def write(self, record):
        row = {"episode": record.episode, "return": record.episode_return, "video": record.video}
        self.out.write(json.dumps(row) + "\n")

    def close(self, summary):
        self.out.write(json.dumps({"summary": summary}) + "\n")
        self.out.close()
