"""``rlrec.run`` from Python, as a notebook calls it."""

from __future__ import annotations

import os

import pyarrow as pa
import yaml

import rlrec
from tests.conftest import plain_loop


def test_run_returns_the_episodes_table_and_the_run_dir(tmp_path):
    result = rlrec.run(
        ["trigger=never", "episodes=6", "seed=2", "sinks=[parquet]"], run_dir=tmp_path / "nb"
    )
    assert result.run_dir == (tmp_path / "nb").absolute()
    assert isinstance(result.episodes, pa.Table)
    expected = plain_loop("CartPole-v1", 2, 6)
    got = result.episodes.select(
        ["episode", "seed", "return", "length", "terminated", "truncated"]
    ).to_pylist()
    assert got == expected
    assert result.summary["status"] == "complete" and result.summary["n"] == 6
    assert yaml.safe_load((result.run_dir / ".hydra" / "overrides.yaml").read_text()) == [
        "trigger=never",
        "episodes=6",
        "seed=2",
        "sinks=[parquet]",
    ]
    assert yaml.safe_load((result.run_dir / ".hydra" / "config.yaml").read_text())["seed"] == 2


def test_default_run_dir_is_the_clis(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rlrec.run(["trigger=never", "episodes=1", "sinks=[parquet]"])
    assert result.run_dir.parent.parent == tmp_path / "outputs"
    assert (result.run_dir / "episodes.parquet").exists()
    assert os.listdir(tmp_path / "outputs") == [result.run_dir.parent.name]
