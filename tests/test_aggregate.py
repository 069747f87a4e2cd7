"""Claims across tasks: point estimates against rliable's own metrics, the stratified bootstrap
against an independent implementation of its definition, and sweeps through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlrec import aggregate as agg
from tests.conftest import run_cli
from tests.test_smoke import _script

SHAPES = [(5, 3), (10, 10), (3, 1), (7, 4)]


def _matrix(shape, rng, ties=False):
    m = rng.normal(0.5, 0.4, shape)
    return np.round(m, 1) if ties else m  # rounding makes ties, which count half


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ties", [False, True])
def test_point_estimates_equal_rliables(shape, ties):
    from rliable import metrics

    rng = np.random.default_rng(shape[0] * 7 + shape[1] + ties)
    m = _matrix(shape, rng, ties)
    assert agg.mean(m) == pytest.approx(metrics.aggregate_mean(m), abs=1e-9)
    assert agg.median(m) == pytest.approx(metrics.aggregate_median(m), abs=1e-9)
    assert agg.iqm(m) == pytest.approx(metrics.aggregate_iqm(m), abs=1e-9)
    assert agg.optimality_gap(m) == pytest.approx(metrics.aggregate_optimality_gap(m), abs=1e-9)
    other = _matrix((shape[0] + 2, shape[1]), rng, ties)
    assert agg.improvement(m, other) == pytest.approx(
        metrics.probability_of_improvement(m, other), abs=1e-9
    )
    assert agg.improvement(m, m) == pytest.approx(0.5, abs=1e-12)


def _their_bootstrap(m, statistic, reps, rng):
    """rliable's stratified bootstrap as its paper defines it, one resample at a time: each
    task's runs drawn with replacement, the statistic of the resampled matrix, percentiles."""
    runs, tasks = m.shape
    draws = []
    for _ in range(reps):
        resampled = np.column_stack([m[rng.integers(0, runs, runs), t] for t in range(tasks)])
        draws.append(statistic(resampled))
    return np.asarray(draws)


def _scores(m, algorithm, envs, reference=(0.0, 1.0)):
    return [
        agg.RunScore(envs[t], algorithm, seed, float(m[seed, t]), reference)
        for seed in range(m.shape[0])
        for t in range(m.shape[1])
    ]


def test_the_bootstrap_intervals_match_an_independent_implementation():
    # Tolerance: each 2.5%/97.5% endpoint of R draws has a Monte-Carlo error of about
    # sqrt(q(1-q)/R)/f(x_q), 0.02 standard deviations of the bootstrap distribution for
    # R = 20,000 (ours) and 0.03 sd for R = 10,000 (theirs): they differ by 0.035 sd or so. We
    # allow 0.12 sd, about 3.5 times that.
    rng = np.random.default_rng(5)
    m = rng.normal(0.6, 0.3, (6, 4))
    envs = [f"E{t}-v0" for t in range(4)]
    tables = agg.aggregate(_scores(m, "", envs), reps=20_000, seed=1)
    rows = {r["metric"]: r for r in tables[agg.AGGREGATES] if r["env"] is None}
    theirs_rng = np.random.default_rng(99)
    for name, statistic in agg.STATISTICS.items():
        draws = _their_bootstrap(m, statistic, 10_000, theirs_rng)
        sd = draws.std()
        low, high = np.percentile(draws, [2.5, 97.5])
        row = rows[name]
        assert row["estimate"] == pytest.approx(statistic(m), abs=1e-12)
        assert abs(row["ci_low"] - low) < 0.12 * sd and abs(row["ci_high"] - high) < 0.12 * sd
        assert row["n_runs"] == 24 and row["n_envs"] == 4 and row["normalized"]
    # performance profiles: the fraction of runs above tau, at every tau; its band likewise
    profile = pd.DataFrame(tables[agg.PROFILES])
    for row in profile.itertuples():
        assert row.fraction == np.mean(m > row.tau)
    some = profile.iloc[[20, 50, 80]]
    for row in some.itertuples():
        draws = _their_bootstrap(m, lambda s, t=row.tau: np.mean(s > t), 10_000, theirs_rng)
        low, high = np.percentile(draws, [2.5, 97.5])
        sd = max(draws.std(), 1e-9)
        assert abs(row.ci_low - low) <= 0.12 * sd + 1 / m.size  # the fractions are on a grid
        assert abs(row.ci_high - high) <= 0.12 * sd + 1 / m.size


def test_probability_of_improvement_and_its_interval():
    from rliable import metrics

    rng = np.random.default_rng(8)
    x, y = rng.normal(0.7, 0.3, (5, 3)), rng.normal(0.5, 0.3, (8, 3))
    envs = ["A-v0", "B-v0", "C-v0"]
    scores = _scores(x, "policy=x", envs) + _scores(y, "policy=y", envs)
    rows = agg.aggregate(scores, reps=20_000, seed=0)[agg.IMPROVEMENT]
    forward = next(r for r in rows if r["algorithm_x"] == "policy=x")
    backward = next(r for r in rows if r["algorithm_x"] == "policy=y")
    assert forward["probability"] == pytest.approx(metrics.probability_of_improvement(x, y), 1e-9)
    assert backward["probability"] == pytest.approx(1 - forward["probability"], abs=1e-12)
    # rliable's stratified bootstrap: each task's runs resampled apart. 10,000 draws at once,
    # P(X > Y) of each by comparing every pair (ties a half), which is rliable's metric on the
    # first 200 draws (rliable's own call takes 3 ms a draw)
    theirs_rng = np.random.default_rng(3)
    tasks = np.arange(3)
    rx = x[theirs_rng.integers(0, 5, (10_000, 5, 3)), tasks]
    ry = y[theirs_rng.integers(0, 8, (10_000, 8, 3)), tasks]
    pairs = rx[:, :, None, :] - ry[:, None, :, :]
    draws = ((pairs > 0) + 0.5 * (pairs == 0)).mean(axis=(1, 2, 3))
    for k in range(200):
        assert draws[k] == pytest.approx(metrics.probability_of_improvement(rx[k], ry[k]), 1e-12)
    low, high = np.percentile(draws, [2.5, 97.5])
    sd = np.std(draws)
    assert abs(forward["ci_low"] - low) < 0.12 * sd and abs(forward["ci_high"] - high) < 0.12 * sd


def test_unequal_seeds_no_reference_and_the_same_numbers_again():
    scores = [agg.RunScore("A-v0", "", s, float(s), (0.0, 10.0)) for s in range(5)]
    scores += [agg.RunScore("B-v0", "", s, float(s) * 2, (0.0, 10.0)) for s in (4, 2, 7)]
    scores += [agg.RunScore("C-v0", "", s, 100.0 + s, None) for s in range(3)]
    tables = agg.aggregate(scores, reps=2000, seed=0)
    rows = pd.DataFrame(tables[agg.AGGREGATES])
    pooled = rows[rows["env"].isna()]
    assert set(pooled["normalized"]) == {True} and set(pooled["n_envs"]) == {2}
    # each env gives as many runs as the one with the fewest, its lowest seeds first
    assert set(pooled["n_runs"]) == {6}
    mean = pooled[pooled["metric"] == "mean"]["estimate"].item()
    assert mean == pytest.approx(np.mean([np.mean([0, 0.1, 0.2]), np.mean([0.4, 0.8, 1.4])]))
    c = rows[rows["env"] == "C-v0"]  # no reference: raw, per env, not pooled
    assert set(c["normalized"]) == {False} and c[c["metric"] == "mean"]["estimate"].item() == 101
    assert agg.aggregate(scores, reps=2000, seed=0) == tables  # reproducible
    assert agg.aggregate(scores, reps=2000, seed=1) != tables


def test_the_algorithm_and_the_references():
    assert agg.algorithm_of(["env=pong", "seed=1", "trigger=every", "video.fps=9"]) == ""
    assert agg.algorithm_of(["policy=sb3", "+policy.lr=3e-4", "episodes=5", "workers=2"]) == (
        "policy.lr=3e-4 policy=sb3"
    )
    assert agg.reference_of("ALE/Pong-v5", {}) == (-20.7, 14.6)
    assert agg.reference_of("BreakoutNoFrameskip-v4", {}) == (1.7, 30.5)
    assert agg.reference_of("CartPole-v1", {}) is None
    given = {"env": {"reference_scores": {"random": 9, "target": 500}}}
    assert agg.reference_of("CartPole-v1", given) == (9.0, 500.0)


POLICIES = "policy._target_=rlrec.policies.RandomPolicy,tests.policies.ObsDrivenPolicy"
ENVS = {  # env preset: its reference scores, or none (not pooled)
    "cartpole": "{random: 20, target: 500}",
    "acrobot": "{random: -500, target: -60}",
    "mountaincar": None,
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """3 envs x 5 seeds x 2 policies through the CLI, a sweep per env (a failed job in one)."""
    root = tmp_path_factory.mktemp("across")
    made = {}
    for env, reference in ENVS.items():
        args = [f"env={env}", "seed=0,1,2,3,4", "policy=custom", POLICIES, "episodes=3"]
        args += ["env.max_episode_steps=60", "trigger=never", "sinks=[parquet,report]"]
        args += ["aggregate.reps=5000"]
        if reference:
            args.append(f"env.reference_scores={reference}")
        if env == "mountaincar":
            args[1] = "seed=0,1,2,3,4,-1"  # a seed no env takes: failed jobs, left out, said
        result = run_cli(args, root / env, multirun=True)
        made[env] = root / env
        assert (root / env / agg.AGGREGATES).exists(), result.proc.stderr[-2000:]
        made[f"{env}-output"] = result.proc.stdout + result.proc.stderr
    return made


@pytest.mark.slow
def test_a_sweep_writes_its_claims_prints_them_and_shows_them(sweeps, chromium):
    rows = pd.read_parquet(sweeps["cartpole"] / agg.AGGREGATES)
    assert set(rows["algorithm"]) == {  # the overrides that define the agent, sorted
        "policy._target_=rlrec.policies.RandomPolicy policy=custom",
        "policy._target_=tests.policies.ObsDrivenPolicy policy=custom",
    }
    pooled = rows[rows["env"].isna()]
    assert set(pooled["metric"]) == set(agg.METRICS) and set(pooled["n_runs"]) == {5}
    output = sweeps["cartpole-output"]
    assert "Across tasks" in output and "P(policy._target_=" in output
    page = sweeps["cartpole"] / "report.html"
    from tests.test_index import _open

    browser_page, problems = _open(chromium, page.as_uri())
    try:
        browser_page.wait_for_function("() => document.querySelectorAll('.u-over').length >= 2")
        text = browser_page.inner_text("body")
    finally:
        browser_page.close()
    assert problems == []
    assert "Across tasks" in text and "1 env" in text and "5 seeds" in text


@pytest.mark.slow
def test_rlrec_aggregate_over_three_sweeps(sweeps, tmp_path):
    out = tmp_path / "claims"
    args = [str(sweeps[env]) for env in ENVS]
    done = _script("rlrec-aggregate", *args, "--out", str(out), "--reps", "4000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "left out" in done.stdout and "mountaincar" in done.stdout.lower()
    rows = pd.read_parquet(out / agg.AGGREGATES)
    pooled = rows[rows["env"].isna()]
    assert set(pooled["n_envs"]) == {2} and set(pooled["n_runs"]) == {10}  # cartpole, acrobot
    mountain = rows[rows["env"] == "MountainCar-v0"]
    assert len(mountain) and not mountain["normalized"].any()
    assert set(mountain["n_runs"]) == {5}  # its failed jobs left out
    # the pooled mean, from the runs' own summaries
    for algorithm, group in pooled[pooled["metric"] == "mean"].groupby("algorithm"):
        target = algorithm.split()[0].split("=")[1]
        per_env = []
        for env, (random, best) in (("cartpole", (20, 500)), ("acrobot", (-500, -60))):
            means = []
            for job in sorted(sweeps[env].iterdir()):
                summary_file = job / "summary.json"
                if not summary_file.exists():
                    continue
                summary = json.loads(summary_file.read_text())
                overrides = (job / ".hydra" / "overrides.yaml").read_text()
                if target in overrides:
                    means.append((summary["mean"] - random) / (best - random))
            per_env.append(np.mean(means))
        assert group["estimate"].item() == pytest.approx(np.mean(per_env), rel=1e-12)
    improvement = pd.read_parquet(out / agg.IMPROVEMENT)
    assert len(improvement) == 2 and set(improvement["n_envs"]) == {3}
    assert improvement["probability"].sum() == pytest.approx(1.0)
    profiles = pd.read_parquet(out / agg.PROFILES)
    assert len(profiles) == 2 * agg.TAUS
    again = tmp_path / "again"
    _script("rlrec-aggregate", *args, "--out", str(again), "--reps", "4000")
    for name in (agg.AGGREGATES, agg.PROFILES, agg.IMPROVEMENT):
        assert pd.read_parquet(again / name).equals(pd.read_parquet(out / name))  # reproducible
    missing = _script("rlrec-aggregate", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "rlrec-aggregate: error:" in missing.stderr
