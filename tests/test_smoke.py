"""The smoke lane, ``pytest -m smoke``: every module imports and every way in runs once.

Meant for the first minute after an install or a change: each module of ``rlrec/`` and of
rlrec's Hydra plugins is imported in a fresh interpreter, and ``run.py`` and every console script
run end to end on a tiny run whose rows are checked against a plain Gymnasium loop.
``tests/test_structure.py`` fails when a module or a console script has no test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, all_frames, plain_loop, run_cli

pytestmark = pytest.mark.smoke

#: Every console script (``[project.scripts]``) and ``run.py``, each with the test that runs it.
ENTRY_POINTS: dict[str, Callable[..., None]] = {}


def runs(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated test as the smoke test of entry point ``name``."""

    def register(test: Callable[..., None]) -> Callable[..., None]:
        ENTRY_POINTS[name] = test
        return test

    return register


def package_modules() -> list[str]:
    """Every importable module of the package and of its Hydra plugins, by dotted name."""
    found = []
    for top in ("rlrec", "hydra_plugins/rlrec_launchers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


IMPORT_ALL = """
import importlib, json, sys, traceback
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        # an optional extra (a tracker, an env family) that is not installed here
        extra = bool(err.name) and not err.name.startswith(("rlrec", "hydra_plugins"))
        failed[name] = ("missing " + err.name) if extra else traceback.format_exc()
    except Exception:
        failed[name] = traceback.format_exc()
print(json.dumps(failed))
"""


@pytest.fixture(scope="module")
def import_failures() -> dict[str, str]:
    """Import every module in one fresh interpreter (a module imported by an earlier test would
    pass here whatever its state): the modules that failed, with why."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *package_modules()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", package_modules())
def test_every_module_imports(import_failures, module):
    why = import_failures.get(module)
    if why and why.startswith("missing ") and os.environ.get("RLREC_REQUIRE_ALL") != "1":
        pytest.skip(f"{module} needs {why[8:]}, an optional extra not installed here")
    assert why is None, why


#: The tiny run every entry point works on: two short CartPole episodes, both filmed.
TINY = ["episodes=2", "env.max_episode_steps=15", "seed=3", "sinks=[parquet,console,report]"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """``python run.py`` on ``TINY``: the run directory the other entry points read."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = run_cli(TINY, run_dir)
    assert result.code == 0, result.proc.stderr[-3000:]
    assert "Traceback" not in result.proc.stderr
    return run_dir


def _rows(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "episodes.parquet").to_pylist()


def _script(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """A console script as pip installed it, beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: pip install -e .")
    env = os.environ | {"PYTHONPATH": ""}
    return subprocess.run(
        [str(path), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


@runs("run.py")
def test_run_py_records_rows_equal_to_a_plain_loop_and_films_them(tiny_run):
    rows = _rows(tiny_run)
    expected = plain_loop("CartPole-v1", 3, 2, max_episode_steps=15)
    keys = ("episode", "seed", "return", "length", "terminated", "truncated")
    assert [{k: r[k] for k in keys} for r in rows] == expected
    for row in rows:
        assert len(all_frames(tiny_run / row["video"])) == row["length"] + 1
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n"] == 2


@runs("rlrec-run")
def test_rlrec_run_records_from_any_folder(tmp_path):
    out = _script("rlrec-run", "episodes=1", "trigger=never", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path / "run")
    assert [r["return"] for r in rows] == [r["return"] for r in plain_loop("CartPole-v1", 0, 1)]


@runs("rlrec-replay")
def test_rlrec_replay_films_a_past_episode_again(tiny_run, tmp_path):
    out = _script("rlrec-replay", str(tiny_run), "--episode", "1", "--out", str(tmp_path / "r.mp4"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(tmp_path / "r.mp4")
    film = all_frames(tiny_run / _rows(tiny_run)[1]["video"])
    replayed = all_frames(tmp_path / "r.mp4")
    assert len(replayed) == len(film) and all(
        (a == b).all() for a, b in zip(replayed, film, strict=True)
    )


@runs("rlrec-report")
def test_rlrec_report_writes_the_run_page(tiny_run):
    page = tiny_run / "report.html"
    page.unlink()
    out = _script("rlrec-report", str(tiny_run))
    assert out.returncode == 0, out.stderr[-3000:]
    html = page.read_text()
    assert all(row["video"] in html for row in _rows(tiny_run))


@runs("rlrec-merge")
def test_rlrec_merge_merges_a_sharded_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    unmerged = ["shard=0,1", "shards=2", "episodes=4", "trigger=never", "sinks=[parquet]"]
    unmerged.append("~hydra.callbacks.summarize_sweep")  # as if the sweep never reached its end
    result = run_cli(unmerged, sweep, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    out = _script("rlrec-merge", str(sweep))
    assert out.returncode == 0, out.stderr[-3000:]
    merged = [r["return"] for r in _rows(sweep / "merged")]
    assert merged == [r["return"] for r in plain_loop("CartPole-v1", 0, 4)]


@runs("rlrec-sync")
def test_rlrec_sync_sends_a_run_recorded_without_a_tracker_to_one(tiny_run):
    out = _script("rlrec-sync", str(tiny_run), "--sink", "tensorboard")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tensorboard: sent 2 episodes" in out.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    returns = [(e.step, e.value) for e in events.Scalars("episode/return")]
    assert returns == [(r["episode"], r["return"]) for r in _rows(tiny_run)]
    again = _script("rlrec-sync", str(tiny_run), "--sink", "tensorboard")
    assert again.returncode == 0 and "nothing to send" in again.stdout, again.stderr[-3000:]


@runs("rlrec-aggregate")
def test_rlrec_aggregate_makes_the_claims_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["seed=0,1", "episodes=2", "trigger=never", "sinks=[parquet]", "aggregate.reps=200"]
    args.append("env.reference_scores={random: 0, target: 500}")
    assert run_cli(args, sweep, multirun=True).code == 0
    out = _script("rlrec-aggregate", str(sweep), "--out", str(tmp_path / "claims"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = pq.read_table(tmp_path / "claims" / "aggregates.parquet").to_pylist()
    pooled = next(r for r in rows if r["env"] is None and r["metric"] == "mean")
    assert {r["algorithm"] for r in rows} == {""}  # one algorithm: empty
    returns = [r["return"] for s in (0, 1) for r in plain_loop("CartPole-v1", s, 2)]
    assert pooled["estimate"] == pytest.approx(sum(returns) / len(returns) / 500, rel=1e-12)
    assert pooled["n_runs"] == 2
