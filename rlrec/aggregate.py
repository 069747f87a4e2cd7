"""Claims across tasks, as rliable makes them (Agarwal et al., 2021), from rlrec's own runs.

**The score of a run** is the mean return of its finished episodes; for a run whose policy learns
(it has ``update`` or ``end_episode``, as under ``experiment=train``), the mean of its last
``aggregate.last_episodes`` episodes (100 by default: the curve's window). **The algorithm** of a
run is its overrides other than the env's, the seed's and those that do not change the agent
(``trigger``, ``video``, ``sinks``, ``hydra``, ``workers``, ``shard(s)``, ``memory_every_s``,
``resume``, ``episodes``, ``aggregate``), sorted and joined by spaces, so the same algorithm in
two sweeps is one; empty when all the runs aggregated share one.

**Normalized scores**: ``(score - random) / (target - random)`` with the env's reference pair,
``env.reference_scores={random: .., target: ..}`` or, for Atari, the random and human scores
papers use (``rlrec/data/atari_reference_scores.csv``). Envs without one are not pooled.

For each algorithm, over its env x seed grid (each env contributes the same number of runs: the
smallest count, lowest seeds first): the mean, median, IQM and optimality gap of normalized scores
with stratified bootstrap CIs (runs resampled within each env), the performance profile (the
fraction of runs above tau, with its band), and for each ordered pair of algorithms the
probability of improvement P(X > Y) with its CI. Per env, the raw scores' mean, median and IQM.
The bootstrap draws ``aggregate.reps`` resamples (50,000, as rliable) from ``aggregate.seed``:
the same runs give the same files.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
METRICS = ("mean", "median", "iqm", "optimality_gap")
#: Keys of a run's overrides that do not change the agent: not part of its algorithm.
NOT_THE_AGENT = (
    "env", "seed", "trigger", "video", "sinks", "hydra", "workers", "shard", "shards",
    "memory_every_s", "resume", "episodes", "aggregate",
)  # fmt: skip
DEFAULTS = {"reps": 50_000, "seed": 0, "last_episodes": 100}
AGGREGATES, PROFILES, IMPROVEMENT = "aggregates.parquet", "profiles.parquet", "improvement.parquet"
#: Points of a performance profile's tau grid.
TAUS = 101
#: Resamples handled at once (bounds the memory of the bootstrap).
CHUNK = 5000


@dataclass(frozen=True)
class RunScore:
    """One run's part in the claims: where it ran, as what, with which seed, how it scored."""

    env: str
    algorithm: str
    seed: int
    score: float
    reference: tuple[float, float] | None  # (random, target)


# -- from runs to scores ------------------------------------------------------------------------


def algorithm_of(overrides: Sequence[str]) -> str:
    """A run's algorithm: the overrides that define the agent, sorted, joined by spaces.

    >>> algorithm_of(["env=pong", "seed=3", "policy=qlearning", "+policy.lr=0.1", "episodes=9"])
    'policy.lr=0.1 policy=qlearning'
    """
    kept = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.split(".")[0] in NOT_THE_AGENT:
            continue
        kept.append(f"{key}={value}")
    return " ".join(sorted(kept))


@functools.cache
def atari_references() -> dict[str, tuple[float, float]]:
    """The Atari games' random and human scores (``atari_reference_scores.csv``)."""
    with (DATA / "atari_reference_scores.csv").open() as file:
        rows = csv.DictReader(line for line in file if not line.startswith("#"))
        return {row["game"]: (float(row["random"]), float(row["human"])) for row in rows}


def reference_of(env_id: str, config: dict[str, Any]) -> tuple[float, float] | None:
    """The env's (random, target) scores: the run's ``env.reference_scores``, else Atari's."""
    given = (config.get("env") or {}).get("reference_scores")
    if given:
        return float(given["random"]), float(given["target"])
    name = env_id.split("/")[-1].split("-")[0].removesuffix("NoFrameskip")
    return atari_references().get(name) if "ALE/" in env_id or "NoFrameskip" in env_id else None


def score_of(run: Any, last_episodes: int) -> float | None:
    """The run's score (see the module's docstring); None without a finite return."""
    summary = run.read_summary()
    learns = summary.get("learns")
    if learns is None:  # a run recorded before rlrec wrote it: ask its policy's class
        learns = _learns((run.read_config() or {}).get("policy") or {})
    if not learns and summary.get("mean") is not None:
        return float(summary["mean"])
    table = run.read_episodes(columns=["episode", "return"])
    if table is None:
        return None
    returns = table.sort_by("episode")["return"].to_numpy()
    if learns:
        returns = returns[-last_episodes:]
    returns = returns[np.isfinite(returns)]
    return float(returns.mean()) if len(returns) else None


def _learns(policy: dict[str, Any]) -> bool:
    try:
        from hydra.utils import get_class

        cls = get_class(policy["_target_"])
    except Exception:
        return False
    return hasattr(cls, "update") or hasattr(cls, "end_episode")


def collect(sweeps: Sequence[Path], last_episodes: int) -> tuple[list[RunScore], list[str]]:
    """The scores of every complete job of ``sweeps``, and what was left out (and why)."""
    from rlrec.rundir import RunDir, SweepDir, read_yaml

    scores, left_out = [], []
    for sweep in sweeps:
        for run in sorted(SweepDir(sweep).runs(), key=lambda r: r.path.name):
            summary = run.read_summary()
            if summary.get("status") != "complete":
                left_out.append(f"{run.path}: {summary.get('status') or 'no summary'}")
                continue
            config = run.read_config() or {}
            overrides = [str(o) for o in read_yaml(run.hydra_overrides) or []]
            score = score_of(RunDir(run.path), last_episodes)
            if score is None:
                left_out.append(f"{run.path}: no finite return")
                continue
            env_id = summary.get("env_id") or (config.get("env") or {}).get("id", "")
            seed = summary.get("seed", config.get("seed", 0))
            reference = reference_of(env_id, config)
            scores.append(RunScore(env_id, algorithm_of(overrides), seed, score, reference))
    return scores, left_out


# -- the statistics -----------------------------------------------------------------------------


def mean(s: np.ndarray) -> np.ndarray:
    """rliable's aggregate mean of a ``(..., runs, tasks)`` score array."""
    return s.mean(axis=-2).mean(axis=-1)


def median(s: np.ndarray) -> np.ndarray:
    return np.median(s.mean(axis=-2), axis=-1)


def iqm(s: np.ndarray) -> np.ndarray:
    """The interquartile mean of all the scores (scipy's ``trim_mean`` at 25%)."""
    flat = np.sort(s.reshape(*s.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)
    return flat[..., cut : n - cut].mean(axis=-1)


def optimality_gap(s: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    return gamma - np.minimum(s, gamma).reshape(*s.shape[:-2], -1).mean(axis=-1)


STATISTICS = {"mean": mean, "median": median, "iqm": iqm, "optimality_gap": optimality_gap}


def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) averaged over tasks (ties count half) of ``(..., runs, tasks)`` arrays."""
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (greater + 0.5 * ties).mean(axis=-1)


def resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` stratified bootstrap resamples of a (runs, tasks) matrix: each task's runs
    drawn with replacement, independently."""
    runs, tasks = scores.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[idx, np.arange(tasks)]


def draw_counts(runs: int, tasks: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified resamples as counts: how often each run of each task is drawn (``runs``
    draws with replacement), shaped ``(reps, tasks, runs)``; a statistic linear
    in the runs is then a matrix product."""
    idx = rng.integers(0, runs, size=(reps, tasks, runs))
    cells = (np.arange(reps * tasks).reshape(reps, tasks, 1) * runs + idx).ravel()
    counts = np.bincount(cells, minlength=reps * tasks * runs)
    return counts.reshape(reps, tasks, runs).astype(float)


def interval(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws."""
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator for one estimate: the same seed and names give the same draws."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def _chunks(reps: int) -> list[int]:
    return [min(CHUNK, reps - i) for i in range(0, reps, CHUNK)]


# -- the tables ---------------------------------------------------------------------------------


def matrix(scores: list[RunScore], envs: list[str], normalized: bool) -> np.ndarray:
    """The (runs, envs) matrix of one algorithm: each env's lowest seeds, as many as the env
    with the fewest has."""
    columns = []
    for env in envs:
        mine = sorted((s for s in scores if s.env == env), key=lambda s: s.seed)
        values = [_normalized(s) if normalized else s.score for s in mine]
        columns.append(values)
    k = min(len(c) for c in columns)
    return np.array([c[:k] for c in columns], dtype=float).T


def _normalized(s: RunScore) -> float:
    random, target = s.reference
    return (s.score - random) / (target - random)


def aggregate(scores: list[RunScore], reps: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``aggregates.parquet``, ``profiles.parquet`` and ``improvement.parquet``."""
    algorithms = sorted({s.algorithm for s in scores})
    by_algorithm = {a: [s for s in scores if s.algorithm == a] for a in algorithms}
    rows: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    pooled: dict[str, np.ndarray] = {}
    for algorithm, mine in by_algorithm.items():
        envs = sorted({s.env for s in mine})
        for env in envs:  # raw scores, per env
            m = matrix(mine, [env], normalized=False)
            rows += _estimates(m, algorithm, env, False, reps, seed, ("mean", "median", "iqm"))
        referenced = sorted({s.env for s in mine if s.reference is not None})
        if referenced:
            m = matrix(mine, referenced, normalized=True)
            pooled[algorithm] = m
            rows += _estimates(m, algorithm, None, True, reps, seed, METRICS)
    if pooled:
        everything = np.concatenate([m.ravel() for m in pooled.values()])
        taus = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), TAUS)
        for algorithm, m in pooled.items():
            profiles += _profile(m, algorithm, taus, reps, seed)
    pairs = []
    for x in algorithms:
        for y in algorithms:
            if x < y:
                pairs += _improvement(by_algorithm[x], by_algorithm[y], x, y, reps, seed)
    return {AGGREGATES: rows, PROFILES: profiles, IMPROVEMENT: pairs}


def _estimates(
    m: np.ndarray,
    algorithm: str,
    env: str | None,
    normalized: bool,
    reps: int,
    seed: int,
    metrics: Sequence[str],
) -> list[dict[str, Any]]:
    rng = _rng(seed, "aggregate", algorithm, env or "")
    draws: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for size in _chunks(reps):
        sample = resample(m, size, rng)
        for name in metrics:
            draws[name].append(STATISTICS[name](sample))
    rows = []
    for name in metrics:
        low, high = interval(np.concatenate(draws[name]))
        rows.append(
            {
                "env": env,
                "algorithm": algorithm,
                "metric": name,
                "estimate": float(STATISTICS[name](m)),
                "ci_low": low,
                "ci_high": high,
                "n_envs": m.shape[1],
                "n_runs": m.size,
                "normalized": normalized,
            }
        )
    return rows


def _profile(
    m: np.ndarray, algorithm: str, taus: np.ndarray, reps: int, seed: int
) -> list[dict[str, Any]]:
    """The fraction of runs whose score exceeds each tau, and its band: a resample's fraction
    is its runs' draw counts times the runs' "above tau" table (one matrix product)."""
    runs, tasks = m.shape
    above = (m.T.reshape(-1, 1) > taus).astype(float)  # (tasks x runs, taus), task-major
    rng = _rng(seed, "profile", algorithm)
    draws = []
    for size in _chunks(reps):
        counts = draw_counts(runs, tasks, size, rng)
        draws.append(counts.reshape(size, -1) @ above / m.size)
    draws = np.concatenate(draws)
    lows, highs = np.percentile(draws, [2.5, 97.5], axis=0)
    fractions = above.mean(axis=0)
    return [
        {
            "algorithm": algorithm,
            "tau": float(t),
            "fraction": float(f),
            "ci_low": float(lo),
            "ci_high": float(hi),
        }
        for t, f, lo, hi in zip(taus, fractions, lows, highs, strict=True)
    ]


def _improvement(
    xs: list[RunScore], ys: list[RunScore], x: str, y: str, reps: int, seed: int
) -> list[dict[str, Any]]:
    """P(X > Y) and P(Y > X) over the envs both ran (scale-free: raw scores)."""
    envs = sorted({s.env for s in xs} & {s.env for s in ys})
    if not envs:
        return []
    mx, my = matrix(xs, envs, False), matrix(ys, envs, False)
    (kx, tasks), ky = mx.shape, my.shape[0]
    # per task, the pairs' outcomes (1, a half for a tie, 0): a resample's P(X > Y) is then its
    # draw counts on either side of that table
    wins = (np.sign(mx.T[:, :, None] - my.T[:, None, :]) + 1) / 2  # (tasks, kx, ky)
    rng = _rng(seed, "improvement", x, y)
    draws = []
    for size in _chunks(reps):
        cx, cy = draw_counts(kx, tasks, size, rng), draw_counts(ky, tasks, size, rng)
        draws.append(np.einsum("rti,tij,rtj->r", cx, wins, cy) / (kx * ky * tasks))
    draws = np.concatenate(draws)
    p = float(improvement(mx, my))
    low, high = interval(draws)
    common = {"n_envs": len(envs)}
    return [
        {"algorithm_x": x, "algorithm_y": y, "probability": p, "ci_low": low, "ci_high": high}
        | common,
        {
            "algorithm_x": y,
            "algorithm_y": x,
            "probability": 1 - p,
            "ci_low": 1 - high,
            "ci_high": 1 - low,
        }
        | common,
    ]


# -- files ----------------------------------------------------------------------------------------

_SCHEMAS = {
    AGGREGATES: [
        ("env", "string"), ("algorithm", "string"), ("metric", "string"),
        ("estimate", "float64"), ("ci_low", "float64"), ("ci_high", "float64"),
        ("n_envs", "int64"), ("n_runs", "int64"), ("normalized", "bool_"),
    ],
    PROFILES: [
        ("algorithm", "string"), ("tau", "float64"), ("fraction", "float64"),
        ("ci_low", "float64"), ("ci_high", "float64"),
    ],
    IMPROVEMENT: [
        ("algorithm_x", "string"), ("algorithm_y", "string"), ("probability", "float64"),
        ("ci_low", "float64"), ("ci_high", "float64"), ("n_envs", "int64"),
    ],
}  # fmt: skip


def write_tables(out: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    """The three files, each with its schema whatever the rows (none included)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlrec.rundir import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    for name, columns in _SCHEMAS.items():
        schema = pa.schema([(column, getattr(pa, kind)()) for column, kind in columns])
        table = pa.Table.from_pylist(tables[name], schema=schema)
        with atomic_path(out / name) as tmp:
            pq.write_table(table, tmp)


def settings(config: dict[str, Any]) -> dict[str, int]:
    """``aggregate.reps``, ``aggregate.seed`` and ``aggregate.last_episodes`` of a config."""
    given = config.get("aggregate") or {}
    return {key: int(given.get(key, default)) for key, default in DEFAULTS.items()}


def table_lines(tables: dict[str, list[dict[str, Any]]], left_out: list[str]) -> list[str]:
    """The short table printed at a sweep's end."""
    lines = []
    for row in tables[AGGREGATES]:
        if row["metric"] not in ("mean", "iqm"):
            continue
        plural = "s" if row["n_envs"] != 1 else ""
        where = row["env"] or f"{row['n_envs']} env{plural}, normalized"
        name = row["algorithm"] or "(one algorithm)"
        lines.append(
            f"{name} · {where} · {row['metric']} {row['estimate']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] over {row['n_runs']} runs"
        )
    for row in tables[IMPROVEMENT]:
        lines.append(
            f"P({row['algorithm_x']} > {row['algorithm_y']}) = {row['probability']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] over {row['n_envs']} envs"
        )
    lines += [f"left out: {why}" for why in left_out]
    return lines


def aggregate_sweeps(sweeps: Sequence[Path], out: Path, config: dict[str, Any]) -> list[str]:
    """Compute the claims over ``sweeps`` into ``out``; return the lines to print."""
    chosen = settings(config)
    scores, left_out = collect(sweeps, chosen["last_episodes"])
    if len({s.algorithm for s in scores}) == 1:  # one algorithm: nothing to tell apart
        scores = [dataclasses.replace(s, algorithm="") for s in scores]
    tables = aggregate(scores, chosen["reps"], chosen["seed"])
    write_tables(out, tables)
    unreferenced = sorted({s.env for s in scores if s.reference is None})
    if unreferenced:
        left_out.append(
            f"not pooled (no env.reference_scores): {', '.join(unreferenced)}; their rows are "
            "per env, raw"
        )
    return table_lines(tables, left_out)


def main(argv: Sequence[str] | None = None) -> int:
    """``rlrec-aggregate SWEEP... [--out DIR]``: the claims across tasks over several sweeps."""
    import argparse
    import sys

    from rlrec.rundir import SweepDir

    parser = argparse.ArgumentParser(
        prog="rlrec-aggregate",
        description="Normalized scores, IQM, performance profiles and probability of "
        "improvement over the runs of one or more sweeps, from their files alone.",
    )
    parser.add_argument("sweeps", nargs="+", type=Path, metavar="SWEEP")
    parser.add_argument("--out", type=Path, help="where the files go (default: the first sweep)")
    parser.add_argument("--reps", type=int, help=f"bootstrap resamples ({DEFAULTS['reps']})")
    parser.add_argument("--seed", type=int, help=f"the bootstrap's seed ({DEFAULTS['seed']})")
    parser.add_argument(
        "--last-episodes", type=int, help="a learner's score: the mean of its last N episodes"
    )
    args = parser.parse_args(argv)
    for sweep in args.sweeps:
        if not SweepDir(sweep).runs():
            print(f"rlrec-aggregate: error: {sweep} holds no sweep's jobs. Fix: name a sweep "
                  "folder (the one with multirun.yaml)", file=sys.stderr)  # fmt: skip
            return 2
    first = (SweepDir(args.sweeps[0]).runs()[0].read_config()) or {}
    config = {"aggregate": settings(first)}
    given = {"reps": args.reps, "seed": args.seed, "last_episodes": args.last_episodes}
    config["aggregate"] |= {key: value for key, value in given.items() if value is not None}
    out = args.out or args.sweeps[0]
    for line in aggregate_sweeps(args.sweeps, out, config):
        print(line)
    print(out / AGGREGATES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
