"""Sweep summaries: the CLI's end-of-sweep files, checked against numpy and scipy."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from scipy import stats

from rlrec.plots import moving_average
from rlrec.sweep import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from tests.conftest import CONF_DIR, ROOT, run_cli

# one worker makes the module's grid sweep once
pytestmark = pytest.mark.xdist_group("sweep")

GRID = ["env.max_episode_steps=15,40", "seed=range(0,3)", "trigger=never", "episodes=12"]


def _returns(job_dir):
    table = pq.read_table(job_dir / "episodes.parquet").sort_by("episode")
    return table["return"].to_numpy()


def _bootstrap(values, statistic):
    result = stats.bootstrap(
        (values,),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return result.confidence_interval


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "sweep"
    result = run_cli(GRID, out, multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_by_three_sweep_numbers_equal_numpy_and_scipy(grid_sweep):
    sweep = grid_sweep.out_dir
    jobs = pq.read_table(sweep / "summary.parquet").to_pylist()
    assert [j["job"] for j in jobs] == list(range(6))
    for job in jobs:
        r = _returns(sweep / str(job["job"]))
        assert job["status"] == "complete" and job["n_episodes"] == 12
        assert job["mean"] == pytest.approx(r.mean()) and job["std"] == pytest.approx(r.std(ddof=1))
        assert job["iqm"] == pytest.approx(stats.trim_mean(r, 0.25))
        assert (job["min"], job["max"]) == (r.min(), r.max())
        assert job["mean_last"] == pytest.approx(r[-100:].mean())
        assert isinstance(job["run_seed"], int) and isinstance(job["env.max_episode_steps"], int)

    groups = pq.read_table(sweep / "groups.parquet").to_pylist()
    assert [g["env.max_episode_steps"] for g in groups] == [15, 40]
    for group in groups:
        members = [j for j in jobs if j["env.max_episode_steps"] == group["env.max_episode_steps"]]
        means = np.array([_returns(sweep / str(j["job"])).mean() for j in members])
        assert group["n_seeds"] == 3 and sorted(group["seeds"]) == [0, 1, 2]
        assert group["mean"] == pytest.approx(means.mean())
        assert group["iqm"] == pytest.approx(stats.trim_mean(means, 0.25))
        low, high = _bootstrap(means, np.mean)
        assert (group["mean_ci95_low"], group["mean_ci95_high"]) == (
            pytest.approx(low),
            pytest.approx(high),
        )
        low, high = _bootstrap(means, lambda x, axis: stats.trim_mean(x, 0.25, axis=axis))
        assert (group["iqm_ci95_low"], group["iqm_ci95_high"]) == (
            pytest.approx(low),
            pytest.approx(high),
        )
        assert group["mean_ci95_low"] <= group["mean"] <= group["mean_ci95_high"]

    markdown = (sweep / "summary.md").read_text()
    assert "| env.max_episode_steps | seeds |" in markdown and "`trigger=never`" in markdown
    assert markdown in grid_sweep.proc.stdout
    png = (sweep / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_give_identical_summaries(grid_sweep, tmp_path, launcher):
    result = run_cli([f"hydra/launcher={launcher}", *GRID], tmp_path / "sweep", multirun=True)
    assert result.code == 0, result.proc.stderr[-3000:]
    _assert_same_summaries(tmp_path / "sweep", grid_sweep.out_dir)


@pytest.mark.slow
def test_seed_preset_and_rerun_give_identical_summaries(tmp_path):
    args = [
        "+sweep=seeds",
        "trigger=periodic",
        "trigger.period=10,50",
        "episodes=4",
        "sinks=[parquet]",
    ]
    first, second = (run_cli(args, tmp_path / name, multirun=True) for name in ("a", "b"))
    assert first.code == 0 and second.code == 0, first.proc.stderr[-2000:]
    groups = pq.read_table(tmp_path / "a" / "groups.parquet")
    assert groups["trigger.period"].to_pylist() == [10, 50]
    assert groups["n_seeds"].to_pylist() == [5, 5]
    _assert_same_summaries(tmp_path / "a", tmp_path / "b")


def _assert_same_summaries(sweep, other):
    """The two sweeps' summary files are equal, but for the jobs' memory (measured, not
    computed: it differs from run to run)."""
    for name in ("summary.parquet", "groups.parquet"):
        ours, theirs = pq.read_table(sweep / name), pq.read_table(other / name)
        if name == "summary.parquet":
            ours, theirs = (t.drop_columns(["peak_rss_bytes"]) for t in (ours, theirs))
        assert ours.equals(theirs)


@pytest.mark.slow
def test_a_failed_job_is_listed_and_the_sweep_exits_non_zero(tmp_path):
    args = ["trigger=periodic", "trigger.period=0,5", "seed=0,1", "episodes=6"]
    result = run_cli(args, tmp_path / "sweep", multirun=True)
    assert result.code != 0
    assert "Traceback" not in result.proc.stderr
    jobs = pq.read_table(tmp_path / "sweep" / "summary.parquet").to_pylist()
    failed = [j for j in jobs if j["status"] == "failed"]
    assert sorted(j["trigger.period"] for j in failed) == [0, 0]
    assert all("trigger.period" in j["error"] for j in failed)
    groups = pq.read_table(tmp_path / "sweep" / "groups.parquet").to_pylist()
    good = next(g for g in groups if g["trigger.period"] == 5)
    bad = next(g for g in groups if g["trigger.period"] == 0)
    assert (good["n_seeds"], good["n_failed"]) == (2, 0)
    assert (bad["n_seeds"], bad["n_failed"], bad["mean"]) == (0, 2, None)
    markdown = (tmp_path / "sweep" / "summary.md").read_text()
    assert "2 job(s) did not complete" in markdown
    # the row of the group whose every job failed says so, and no "1 seed" beside "0"
    row = next(line for line in markdown.splitlines() if line.startswith("| 0 |"))
    assert "0 (2 failed)" in row and "n/a (no seed completed)" in row and "1 seed" not in row


@pytest.mark.slow
def test_two_sweeps_read_as_one_dataset(grid_sweep, tmp_path):
    """One sweep with a failed job, one without: every column keeps one Arrow type."""
    failing = run_cli(
        ["env.id=NoSuchEnv-v0,CartPole-v1", "episodes=3"], tmp_path / "s", multirun=True
    )
    assert failing.code == 1
    for name in ("summary.parquet", "groups.parquet"):
        a, b = grid_sweep.out_dir / name, tmp_path / "s" / name
        schema_a, schema_b = pq.read_schema(a), pq.read_schema(b)
        for field in schema_a:
            assert not pa.types.is_null(field.type), f"{name}: {field.name} has the null type"
            if field.name in schema_b.names:
                assert schema_b.field(field.name).type == field.type, (name, field.name)
        both = duckdb.sql(f"SELECT * FROM read_parquet(['{a}', '{b}'], union_by_name=true)")
        assert len(both.fetchall()) == pq.read_metadata(a).num_rows + pq.read_metadata(b).num_rows
    jobs = pq.read_table(tmp_path / "s" / "summary.parquet").to_pylist()
    assert {j["status"] for j in jobs} == {"failed", "complete"}
    assert [j["run_seed"] for j in jobs] == [0, 0]  # not swept: the config's seed
    assert "seed" not in pq.read_schema(grid_sweep.out_dir / "summary.parquet").names


@pytest.mark.slow
def test_summarize_script_on_a_run_a_sweep_and_a_folder_of_sweeps(grid_sweep, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "summarize.py")]
    run = subprocess.run([*script, str(grid_sweep.out_dir / "2")], capture_output=True, text=True)
    assert run.returncode == 0 and "Run summary" in run.stdout and "12 episodes" in run.stdout

    other = run_cli(
        ["seed=5,6", "trigger=never", "episodes=3"], tmp_path / "two" / "s2", multirun=True
    )
    assert other.code == 0
    copy = tmp_path / "two" / "s1"
    subprocess.run(["cp", "-r", str(grid_sweep.out_dir), str(copy)], check=True)
    for name in ("summary.parquet", "groups.parquet", "summary.md", "learning_curves.png"):
        (copy / name).unlink()
    both = subprocess.run([*script, str(tmp_path / "two")], capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    assert both.stdout.count("# Sweep summary") == 2
    assert pq.read_table(copy / "groups.parquet").equals(
        pq.read_table(grid_sweep.out_dir / "groups.parquet")
    )


@pytest.mark.slow
def test_duckdb_joins_episodes_to_overrides_through_job(grid_sweep):
    sweep = grid_sweep.out_dir
    rows = duckdb.sql(f"""
        SELECT s."env.max_episode_steps" AS steps, count(*) AS episodes, max(e.length) AS longest
        FROM read_parquet('{sweep}/*/episodes.parquet') e
        JOIN read_parquet('{sweep}/summary.parquet') s USING (job, run_seed)
        GROUP BY steps ORDER BY steps
    """).fetchall()
    assert [(steps, episodes) for steps, episodes, _ in rows] == [(15, 36), (40, 36)]
    assert all(longest <= steps for steps, _, longest in rows)


def test_slurm_launcher_preset_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 2


def test_moving_average_is_a_trailing_mean():
    values = np.arange(10, dtype=float)
    got = moving_average(values, 3)
    expected = [np.mean(values[max(0, i - 2) : i + 1]) for i in range(10)]
    assert got == pytest.approx(expected)


def test_summary_md_carries_overrides_and_errors_as_text_never_markup(tmp_path):
    import markdown

    sweep = tmp_path / "sweep"
    tag = "<img src=x onerror=alert(3)>"
    args = ["seed=0,1", f"+trigger.tag='{tag}|x',b", "episodes=2", "trigger=never"]
    run_cli(args, sweep, multirun=True)  # the jobs fail (no such key): their values still show
    text = (sweep / "summary.md").read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(3)&gt;" in text
    page = markdown.markdown(text, extensions=["tables"])
    assert "<img" not in page and "&lt;img src=x onerror=alert(3)&gt;" in page
    assert "<table>" in page  # the | in a value stays inside its cell
