"""Reading a W&B offline run's files back, as the tests' own reader: wandb 0.31 ships none.

``run-<id>.wandb`` is a LevelDB-style log: a 7-byte header (``:W&B``, a magic number, a version),
then 32 KiB blocks of records, each with a 7-byte header (CRC, length, type: whole, first, middle
or last piece), a block's tail under 7 bytes left as padding. Each record is a
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the block's padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zeros: the rest of the block is empty
            pos += left
            continue
        piece, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (FULL, FIRST):
            pending = piece
        else:
            pending += piece
        if kind in (FULL, LAST):
            out.append(wandb_internal_pb2.Record.FromString(pending))
    return out


def history(recs: list[Any]) -> list[dict[str, Any]]:
    """Every logged row, its values decoded from JSON."""
    rows = []
    for record in recs:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def summary_values(recs: list[Any]) -> dict[str, Any]:
    """The run's summary as W&B keeps it: each key's last value."""
    found: dict[str, Any] = {}
    for record in recs:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                found[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return found


def run_record(recs: list[Any]) -> Any:
    return next(r.run for r in recs if r.WhichOneof("record_type") == "run")


def config(recs: list[Any]) -> dict[str, Any]:
    """The config as updated over the run."""
    found: dict[str, Any] = {}
    for record in recs:
        kind = record.WhichOneof("record_type")
        items = (
            record.config.update
            if kind == "config"
            else (record.run.config.update if kind == "run" else [])
        )
        for item in items:
            found[item.key] = json.loads(item.value_json)
    return found


def offline_runs(run_dir: Path) -> list[Path]:
    """The run's offline folders' ``.wandb`` files, oldest first."""
    return sorted(Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb"))
