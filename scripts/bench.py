"""Benchmarks: rlrec against the baselines its issues name, measured in one invocation.

    python scripts/bench.py core            # issue 2: filming speed, memory, stats-only wall time
    python scripts/bench.py core --quick    # the same without Gymnasium's 3.5 GB RecordVideo run
    python scripts/bench.py codecs          # issue 12: each codec's frames/s and bytes/frame
    python scripts/bench.py report          # issue 13: what report.html costs
    python scripts/bench.py sweep           # issue 5: a 20-job sweep, basic vs joblib launcher
    python scripts/bench.py adaptive        # issue 3: a filmed frame, decided after vs before
    python scripts/bench.py training        # issue 4: experiment=train, five seeds
    python scripts/bench.py reliability     # issue 6: memory of 100,000 vs 10,000 episodes
    python scripts/bench.py parallel        # issue 7: vector envs and worker processes
    python scripts/bench.py trackers        # issues 14, 15: tracker sinks, memory sampling
    python scripts/bench.py wrappers        # issues 16, 17: the drop-in wrappers and Recorders
    python scripts/bench.py envs            # issue 18: filming MuJoCo and Atari, memory, digest
    python scripts/bench.py scale           # issues 19, 20: shards; short sweeps, start-up, Ray
    python scripts/bench.py pixels          # issue 28: filming, file size, replay, PSNR per codec
    python scripts/bench.py contract --against 6eb1aca  # issue 30: the contract's cost per episode
    python scripts/bench.py sync            # issue 34: rlrec-sync of 10,000 episodes vs live
    python scripts/bench.py index           # issue 35: the index of 1,000 runs: build and open
    python scripts/bench.py aggregates      # issue 36: claims across tasks, 50,000 resamples
    python scripts/bench.py core --against 829b750   # also an older commit, interleaved

``--against REV`` checks REV out in a temporary git worktree and runs every rlrec command of the
suite there too, interleaved with this tree's, then prints new / old for each (``core`` and
``parallel``): a restructuring must not cost speed.

Every figure is a whole process (a subprocess), timed from the outside; where start-up is not the
point it is subtracted by timing a one-step run of the same command. Runs of different commands
are interleaved and the median is reported, because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PY = sys.executable
#: A worktree of ``--against REV``, whose rlrec the "(old)" commands run.
OLD: Path | None = None


@dataclass
class Measured:
    """One finished process: wall seconds and peak resident memory in MB."""

    seconds: float
    peak_mb: float


def measure(cmd: list[str], cwd: Path = SCRIPTS, track_tree: bool = False) -> Measured:
    """Run ``cmd`` to completion: its wall time, and its peak RSS (with ``track_tree``, that of
    the process and its children together, sampled every 10 ms)."""
    env = os.environ | {"SDL_VIDEODRIVER": "dummy"}
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty process never blocks
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        peak_tree = _peak_tree_rss(proc.pid) if track_tree else 0.0
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{tail}")
    return Measured(seconds, max(usage.ru_maxrss / 1024, peak_tree))


def _peak_tree_rss(pid: int) -> float:
    """Peak of the summed RSS (MB) of ``pid`` and its children, sampled until ``pid`` exits.

    ``wait4`` reports one process; rlrec's encoder is a child process, and it counts too.
    """
    import psutil

    root, peak = psutil.Process(pid), 0.0
    while root.status() != psutil.STATUS_ZOMBIE:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.01)
    return peak


def interleaved(
    commands: dict[str, Callable[[], list[str]]], repeats: int
) -> dict[str, list[Measured]]:
    """Run every command ``repeats`` times, round-robin, so that load drifts hit all alike."""
    results: dict[str, list[Measured]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, make in commands.items():
            results[name].append(measure(make()))
    return results


def median(runs: list[Measured]) -> float:
    return statistics.median(r.seconds for r in runs)


def rlrec(*overrides: str) -> list[str]:
    """``python run.py`` with its output in a fresh temporary folder."""
    return rlrec_in(*overrides)[0]


def rlrec_in(*overrides: str, root: Path = ROOT) -> tuple[list[str], Path]:
    """``python run.py`` (of ``root``'s rlrec) and the fresh temporary folder it writes to.

    The runs write Parquet only (``sinks=[parquet]``) unless told otherwise: the figures are about
    the loop, not the console, the progress bar or the report page.
    """
    out = Path(tempfile.mkdtemp(prefix="rlrec-bench-"))
    if not any(o.startswith("sinks=") for o in overrides):
        overrides = (*overrides, "sinks=[parquet]")
    # PYTHONPATH: the encoder and worker processes import the same rlrec as the run
    env = ["env", f"PYTHONPATH={root}"] if root != ROOT else []
    return [*env, PY, str(root / "run.py"), *overrides, f"hydra.run.dir={out}"], out


def old(*overrides: str) -> list[str]:
    """``python run.py`` of the ``--against`` commit."""
    assert OLD is not None
    return rlrec_in(*overrides, root=OLD)[0]


def with_old(commands: dict[str, Callable[[], list[str]]], overrides: dict[str, tuple[str, ...]]):
    """``commands`` plus, with ``--against``, an "(old)" twin of each rlrec command in
    ``overrides`` (its name -> its overrides), interleaved with the rest."""
    if OLD is None:
        return commands
    twins = {f"{name} (old)": (lambda o=o: old(*o)) for name, o in overrides.items()}
    return commands | twins


def print_against(runs: dict[str, list[Measured]], names: list[str]) -> None:
    """new / old for every command that has an "(old)" twin."""
    if OLD is None:
        return
    print(f"  this tree against {OLD.name} (median of each, whole process):")
    for name in names:
        new, before = median(runs[name]), median(runs[f"{name} (old)"])
        print(
            f"    {name:36s} new {new:7.2f} s  old {before:7.2f} s  new / old = {new / before:.3f}"
        )


def checkout(rev: str) -> Path:
    """``rev`` in a temporary git worktree, removed when the benchmark ends."""
    folder = Path(tempfile.mkdtemp(prefix="rlrec-old-")) / rev.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev],
        check=True,
        capture_output=True,
    )

    def remove() -> None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)])
        shutil.rmtree(folder.parent, ignore_errors=True)

    atexit.register(remove)
    return folder


def filmed_frames(run_dir: Path) -> int:
    """Frames in the run's videos: length + 1 for every filmed episode."""
    from rlrec.rundir import RunDir

    rows = RunDir(run_dir).read_episodes().select(["length", "video"]).to_pylist()
    return sum(r["length"] + 1 for r in rows if r["video"])


def rlrec_sweep(*overrides: str, root: Path = ROOT) -> tuple[list[str], Path]:
    """``python run.py -m`` (of ``root``'s rlrec) with its sweep folder in a fresh temporary
    folder."""
    out = Path(tempfile.mkdtemp(prefix="rlrec-sweep-")) / "sweep"
    env = ["env", f"PYTHONPATH={root}"] if root != ROOT else []
    return [*env, PY, str(root / "run.py"), "-m", *overrides, f"hydra.sweep.dir={out}"], out


def baseline(*args: str) -> list[str]:
    return [PY, str(SCRIPTS / "bench_baselines.py"), *args]


def core(args: argparse.Namespace) -> None:
    """Issues 2 and 12: filming 5 x 500 CartPole steps (h264, the default, and mp4v) against
    Gymnasium's RecordVideo and the render-only floor; memory of a 5,000-step film against a
    500-step one; stats-only runs."""
    film = ["policy=custom", "policy._target_=bench_policies.Balance", "trigger=every", "seed=0"]
    one_step = ("env.max_episode_steps=1", "episodes=1")
    out = tempfile.mkdtemp(prefix="gym-bench-")
    filmed = (*film, "episodes=5", "env.max_episode_steps=500")
    mp4v = ("video.codec=mp4v",)
    commands = {
        "A gymnasium RecordVideo": lambda: baseline("recordvideo", "--out", out),
        "A start-up (1 step)": lambda: baseline(
            "recordvideo", "--out", out, "--episodes", "1", "--max-steps", "1"
        ),
        "B rlrec h264": lambda: rlrec(*filmed),
        "B start-up (1 step)": lambda: rlrec(*film, *one_step),
        "V rlrec h264 veryfast": lambda: rlrec(*filmed, "video.preset=veryfast"),
        "M rlrec mp4v": lambda: rlrec(*filmed, *mp4v),
        "M start-up (1 step)": lambda: rlrec(*film, *one_step, *mp4v),
        "R render only": lambda: baseline("render"),
        "R start-up (1 step)": lambda: baseline("render", "--episodes", "1", "--max-steps", "1"),
    }
    # the commit compared against may predate h264: its twin films mp4v, as "M" does here
    twins = {"M rlrec mp4v": (*filmed, *mp4v), "M start-up (1 step)": (*film, *one_step, *mp4v)}
    commands = with_old(commands, twins)
    runs = interleaved(commands, args.repeats)
    start_up = {"V": "B"}  # the preset changes the encoding, not the start-up
    loop = {
        k[0]: median(runs[k]) - median(runs[f"{start_up.get(k[0], k[0])} start-up (1 step)"])
        for k in runs
        if "start-up" not in k and "(old)" not in k
    }
    print(
        f"\nFilming 5 CartPole episodes x 500 steps, every episode "
        f"(median of {args.repeats}, start-up subtracted):"
    )
    shown = ["A gymnasium RecordVideo", "B rlrec h264", "V rlrec h264 veryfast", "M rlrec mp4v"]
    for name in [*shown, "R render only"]:
        print(f"  {name:26s} {loop[name[0]]:7.2f} s   (whole process {median(runs[name]):.2f} s)")
    print(f"  A / B = {loop['A'] / loop['B']:.2f}x   (target >= 1.8x: h264 faster than Gymnasium)")
    print(f"  B / R = {loop['B'] / loop['R']:.2f}x   (target <= 1.20x of rendering alone)")
    print(f"  V / R = {loop['V'] / loop['R']:.2f}x   (h264 with video.preset=veryfast)")
    print(f"  M / R = {loop['M'] / loop['R']:.2f}x   (mp4v, the old default)")
    if OLD is not None:
        before = median(runs["M rlrec mp4v (old)"]) - median(runs["M start-up (1 step) (old)"])
        print(f"  M new / old = {loop['M'] / before:.3f}   (the filming loop, start-up subtracted)")
        print_against(runs, list(twins))

    print("\nMemory, one filmed episode (peak RSS of the process tree: rlrec and its encoder):")
    long = ["policy=custom", "policy._target_=bench_policies.BalanceLong", "episodes=1"]
    short_mem = measure(rlrec(*long, "env.max_episode_steps=500"), track_tree=True)
    b_mem = measure(rlrec(*long, "env.max_episode_steps=5000"), track_tree=True)
    print(f"  B rlrec h264,   500 steps  {short_mem.peak_mb:7.0f} MB")
    print(f"  B rlrec h264, 5,000 steps  {b_mem.peak_mb:7.0f} MB  (target <= 230 MB)")
    ratio = b_mem.peak_mb / short_mem.peak_mb
    print(f"  5,000 / 500 steps = {ratio:.3f}x   (target within 10%: flat)")
    if not args.quick:
        a_mem = measure(
            track_tree=True,
            cmd=baseline(
                "recordvideo",
                "--out",
                out,
                "--episodes",
                "1",
                "--max-steps",
                "5000",
                "--policy",
                "balance_long",
            ),
        )
        print(f"  A gymnasium RecordVideo    {a_mem.peak_mb:7.0f} MB  ({a_mem.seconds:.1f} s)")
        print(f"  A / B = {a_mem.peak_mb / b_mem.peak_mb:.1f}x the memory")

    stats = {
        "guide loop + RecordEpisodeStatistics": lambda: baseline("guide", "--episodes", "10000"),
        "the same + the contract's seeding": lambda: baseline(
            "guide", "--episodes", "10000", "--contract-seeds"
        ),
        "rlrec trigger=never": lambda: rlrec("trigger=never", "episodes=10000"),
    }
    names = list(stats)
    stats = with_old(stats, {"rlrec trigger=never": ("trigger=never", "episodes=10000")})
    runs = interleaved(stats, args.stats_repeats)
    guide, seeded, ours = (median(runs[k]) for k in names)
    print(
        f"\nStats only, 10,000 random CartPole episodes, whole process incl. start-up "
        f"(median of {args.stats_repeats}):"
    )
    for name in names:
        print(f"  {name:38s} {median(runs[name]):6.2f} s")
    print(f"  rlrec / guide = {ours / guide:.2f}x   (target <= 1.25x)")
    print(
        f"  rlrec / seeded guide = {ours / seeded:.2f}x   (rlrec's own cost: Hydra, Parquet, ...)"
    )
    print_against(runs, ["rlrec trigger=never"])


def codecs(args: argparse.Namespace) -> None:
    """Issue 12: each codec's streaming encoder alone: frames per second through the encoder
    process (500 CartPole frames, from the first ``add`` to the file complete) and bytes per
    frame; and whether browsers play it."""
    import gymnasium as gym
    import numpy as np

    from rlrec.codecs import CODECS
    from rlrec.video import Encoder, VideoSettings

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    rng = np.random.default_rng(0)
    while len(frames) < 500:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        frames.append(env.render())
        if terminated or truncated:
            env.reset(seed=len(frames))
    env.close()
    folder = Path(tempfile.mkdtemp(prefix="rlrec-codecs-"))
    settings = {name: VideoSettings(codec, 50) for name, codec in CODECS.items()}
    for preset in ("veryfast", "medium"):
        settings[f"h264 {preset}"] = VideoSettings(CODECS["h264"], 50, preset=preset)
    times: dict[str, list[float]] = {name: [] for name in settings}
    sizes: dict[str, int] = {}
    with Encoder() as encoder:
        encoder.start()
        for _ in range(args.repeats):
            for name, video in settings.items():
                path = folder / f"{name.replace(' ', '-')}.{video.codec.extension}"
                start = time.perf_counter()
                writer = encoder.open(path, video)
                for frame in frames:
                    writer.add(frame)
                writer.close()
                times[name].append(time.perf_counter() - start)
                sizes[name] = path.stat().st_size
    shutil.rmtree(folder, ignore_errors=True)
    print(f"\nEach codec, 500 CartPole frames, 600x400 (median of {args.repeats}):")
    print("  codec          frames/s  bytes/frame  plays in browsers")
    for name, video in settings.items():
        fps = len(frames) / statistics.median(times[name])
        per_frame = sizes[name] / len(frames)
        plays = "yes" if video.codec.browser else "no"
        print(f"  {name:14s} {fps:8.0f}  {per_frame:11.0f}  {plays}")


def pixels(args: argparse.Namespace) -> None:
    """Issue 28: filming against the render-only floor on CartPole and Pong, the default codec's
    bytes against Gymnasium's file for the same episodes, replay against live filming, and each
    codec's worst-frame PSNR on a real Pong game."""
    out = Path(tempfile.mkdtemp(prefix="rlrec-pixels-"))
    loops = {
        "CartPole": ("--env", "CartPole-v1", "--episodes", "5", "--max-steps", "500"),
        "Pong": (
            "--env",
            "ALE/Pong-v5",
            "--policy",
            "random",
            "--episodes",
            "1",
            "--max-steps",
            "0",
        ),
    }
    one_step = ("--episodes", "1", "--max-steps", "1")
    folders: dict[tuple[str, str], Path] = {}

    def film(env: str, who: str, *extra: str) -> Callable[[], list[str]]:
        def command() -> list[str]:
            folder = Path(tempfile.mkdtemp(dir=out))
            folders[env, who] = folder
            return baseline("recordvideo", *loops[env], "--out", str(folder), *extra)

        return command

    presets = ("veryfast", "superfast", "ultrafast")  # the default first
    commands: dict[str, Callable[[], list[str]]] = {}
    for env, loop in loops.items():
        commands |= {
            f"{env} render only": lambda loop=loop: baseline("render", *loop),
            f"{env} gymnasium": film(env, "gymnasium"),
            f"{env} start-up render": lambda loop=loop: baseline("render", *loop, *one_step),
            f"{env} start-up rlrec": lambda loop=loop: baseline(
                "recordvideo", *loop, "--out", str(out / "x"), "--wrappers", "rlrec", *one_step
            ),
        }
        for preset in presets:
            extra = ("--wrappers", "rlrec", "--preset", preset)
            commands[f"{env} rlrec {preset}"] = film(env, preset, *extra)
    runs = interleaved(commands, args.repeats)
    print(
        f"\nThe trade-off: rlrec's drop-in RecordVideo filming every frame, against rendering "
        f"alone and Gymnasium's file for the same episodes (median of {args.repeats}, start-up "
        f"out; targets: <= 1.20x the time, <= 1.3x the bytes):"
    )
    print(
        f"  {'preset':10s} " + "  ".join(f"{e + ' time':>14s} {e + ' bytes':>14s}" for e in loops)
    )
    for preset in presets:
        cells = []
        for env in loops:
            floor = median(runs[f"{env} render only"]) - median(runs[f"{env} start-up render"])
            loop_s = median(runs[f"{env} rlrec {preset}"]) - median(runs[f"{env} start-up rlrec"])
            size = {
                who: sum(f.stat().st_size for f in folders[env, who].glob("*.mp4"))
                for who in (preset, "gymnasium")
            }
            cells.append(f"{loop_s / floor:13.2f}x {size[preset] / size['gymnasium']:13.2f}x")
        default = "  (the default)" if preset == presets[0] else ""
        print(f"  {preset:10s} " + "  ".join(cells) + default)
    for env in loops:
        floor = median(runs[f"{env} render only"]) - median(runs[f"{env} start-up render"])
        gym_s = median(runs[f"{env} gymnasium"]) - median(runs[f"{env} start-up render"])
        print(f"  {env}: render only {floor:.2f} s; Gymnasium's RecordVideo {gym_s:.2f} s")
    shutil.rmtree(out, ignore_errors=True)
    adaptive(args)
    _codec_psnr(args)


def _codec_psnr(args: argparse.Namespace) -> None:
    """Each codec on one Pong game's frames (random actions, seed 0): frames per second through
    the encoder process, bytes per frame, and the worst and mean PSNR of the decoded frames."""
    import ale_py
    import gymnasium as gym

    sys.path.insert(0, str(ROOT))
    from rlrec.codecs import CODECS
    from rlrec.video import Encoder, VideoSettings
    from tests.pixels import fidelity

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", render_mode="rgb_array")
    env.action_space.seed(0)
    env.reset(seed=0)
    frames, done = [env.render()], False
    while not done:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append(env.render())
        done = terminated or truncated
    env.close()
    folder = Path(tempfile.mkdtemp(prefix="rlrec-psnr-"))
    print(f"\nEach codec at its defaults, one Pong game ({len(frames)} frames, 160x210):")
    print("  codec   frames/s  bytes/frame  worst PSNR  mean PSNR")
    with Encoder() as encoder:
        for name, codec in CODECS.items():
            path = folder / f"pong.{codec.extension}"
            start = time.perf_counter()
            writer = encoder.open(path, VideoSettings(codec, 15))
            for frame in frames:
                writer.add(frame)
            writer.close()
            fps = len(frames) / (time.perf_counter() - start)
            result = fidelity(path, frames)
            print(
                f"  {name:6s} {fps:9.0f}  {path.stat().st_size / len(frames):11.0f}  "
                f"{result.worst:10.1f}  {result.mean:9.1f}"
            )

    shutil.rmtree(folder, ignore_errors=True)


def report(args: argparse.Namespace) -> None:
    """Issue 13: what report.html costs for 10,000 episodes and 40 films."""
    from rlrec.report import write_run_report
    from rlrec.rundir import RunDir

    film = ("trigger=periodic", "trigger.period=250", "episodes=10000")
    with_report = {
        "sinks=[parquet]": lambda: rlrec(*film),
        "sinks=[parquet,report]": lambda: rlrec(*film, "sinks=[parquet,report]"),
    }
    runs = interleaved(with_report, args.repeats)
    cmd, out = rlrec_in(*film)
    measure(cmd)
    run = RunDir(out)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        page = write_run_report(run)
        seconds.append(time.perf_counter() - start)
    print(f"\n10,000 random CartPole episodes, 40 filmed (median of {args.repeats}):")
    for name in with_report:
        print(f"  {name:24s} {median(runs[name]):6.2f} s whole process")
    print(
        f"  the report itself, from the files (rlrec-report): {statistics.median(seconds):.2f} s; "
        f"the page {page.stat().st_size / 1e3:.0f} kB (target < 2 MB)"
    )


def sweep(args: argparse.Namespace) -> None:
    """Issue 5: a 20-job sweep of 200-episode stats-only runs; what the summary costs."""
    from rlrec.sweep import summarize_sweep

    grid = ["seed=range(0,20)", "trigger=never", "episodes=200", "sinks=[parquet]"]
    launchers = {
        "basic launcher": [],
        "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    }
    times: dict[str, list[float]] = {name: [] for name in launchers}
    last: Path | None = None
    for _ in range(args.repeats):
        for name, extra in launchers.items():
            cmd, last = rlrec_sweep(*extra, *grid)
            times[name].append(measure(cmd).seconds)
    print(
        f"\nSweep of 20 jobs x 200 random CartPole episodes, stats only, whole process "
        f"(median of {args.repeats}):"
    )
    basic = statistics.median(times["basic launcher"])
    for name, runs in times.items():
        t = statistics.median(runs)
        print(f"  {name:20s} {t:6.2f} s   ({basic / t:.2f}x the basic launcher's speed)")
    in_process = []
    for _ in range(3):
        start = time.perf_counter()
        summarize_sweep(last)
        in_process.append(time.perf_counter() - start)
    script = measure([PY, str(SCRIPTS / "summarize.py"), str(last)]).seconds
    print(
        f"  the summary itself: {statistics.median(in_process):.2f} s in process "
        f"(reading 4,000 episodes, bootstrap, plot); scripts/summarize.py whole process "
        f"{script:.2f} s"
    )


def adaptive(args: argparse.Namespace) -> None:
    """Issue 3: what a filmed frame costs when the decision comes after the episode."""
    common = ["episodes=300", "seed=0", "sinks=[parquet]"]
    modes = {
        "never": ["trigger=never"],
        "every": ["trigger=every"],
        "adaptive": ["trigger=adaptive"],
        # every episode chosen after it ended: the same films as "every", each made by replay
        "replay-all": ["trigger=adaptive", "trigger.criterion=threshold", "trigger.threshold=0"],
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    frames: dict[str, int] = {}
    for _ in range(args.repeats):
        for mode, extra in modes.items():
            cmd, out = rlrec_in(*common, *extra)
            times[mode].append(measure(cmd).seconds)
            frames[mode] = filmed_frames(out)
    t = {m: statistics.median(v) for m, v in times.items()}
    per_frame = {m: (t[m] - t["never"]) / frames[m] for m in ("every", "adaptive", "replay-all")}
    print(f"\n300 random CartPole episodes, whole process (median of {args.repeats}):")
    for mode in modes:
        print(f"  {mode:16s} {t[mode]:6.2f} s   {frames.get(mode, 0):6d} frames filmed")
    for mode, cost in per_frame.items():
        print(f"  cost of a filmed frame, {mode:8s} {cost * 1e3:6.2f} ms  ((t - never) / frames)")
    print(
        f"  adaptive / every = {per_frame['adaptive'] / per_frame['every']:.2f}x   "
        f"(a few films: start-up costs of the replay env weigh)"
    )
    print(
        f"  replay-all / every = {per_frame['replay-all'] / per_frame['every']:.2f}x   "
        f"(the same films, by replay vs live; target <= 1.25x)"
    )


def training(args: argparse.Namespace) -> None:
    """Issue 4: ``python run.py experiment=train`` (10,000 episodes), whole process, five seeds;
    the episode by which the last 100 episodes' mean return first reaches 195."""
    import numpy as np

    from rlrec.rundir import RunDir

    print("\npython run.py experiment=train, whole process, per seed:")
    for seed in range(5):
        cmd, out = rlrec_in("experiment=train", f"seed={seed}")
        seconds = measure(cmd).seconds
        returns = RunDir(out).read_episodes().sort_by("episode")["return"].to_numpy()
        rolling = np.convolve(returns, np.ones(100) / 100, mode="valid")
        reached = np.flatnonzero(rolling >= 195)
        first = f"episode {reached[0] + 99}" if len(reached) else "never"
        print(
            f"  seed {seed}: {seconds:6.1f} s; mean of 100 consecutive episodes >= 195 first at "
            f"{first}; best 100-episode mean {rolling.max():.1f}, "
            f"last 100 {returns[-100:].mean():.1f}"
        )


def reliability(args: argparse.Namespace) -> None:
    """Issue 6: memory stays flat: peak RSS of a 100,000-episode stats-only run vs 10,000."""
    print("\nStats-only runs (default sinks, actions stored), peak RSS of the process tree:")
    peaks = {}
    for episodes in (10_000, 100_000):
        m = measure(rlrec("trigger=never", f"episodes={episodes}"), track_tree=True)
        peaks[episodes] = m.peak_mb
        print(f"  {episodes:7,d} episodes: {m.peak_mb:6.1f} MB   ({m.seconds:.1f} s)")
    print(f"  100,000 / 10,000 = {peaks[100_000] / peaks[10_000]:.3f}x   (target <= 1.10x)")


def parallel(args: argparse.Namespace) -> None:
    """Issue 7: 100,000 cheap stats-only episodes, and 1,000 episodes of a 1 ms-a-step env."""
    many = ("trigger=never", "episodes=100000")
    cheap_rlrec = {
        "rlrec workers=1": many,
        "rlrec workers=2": (*many, "workers=2"),
        "rlrec env.num_envs=8 (sync)": (*many, "env.num_envs=8", "env.vectorization=sync"),
    }
    cheap = {
        "guide loop + RecordEpisodeStatistics": lambda: baseline("guide", "--episodes", "100000"),
        **{name: (lambda o=o: rlrec(*o)) for name, o in cheap_rlrec.items()},
    }
    names = list(cheap)
    cheap = with_old(cheap, cheap_rlrec)
    runs = interleaved(cheap, args.stats_repeats)
    one = median(runs["rlrec workers=1"])
    print(
        f"\n100,000 random CartPole episodes, stats only, default sinks, whole process "
        f"(median of {args.stats_repeats}):"
    )
    for name in names:
        print(
            f"  {name:38s} {median(runs[name]):6.2f} s   workers=1 / this = "
            f"{one / median(runs[name]):.2f}x"
        )
    print("  target: workers=2 at least 1.6x faster than workers=1")
    print_against(runs, list(cheap_rlrec))

    slow = ["env.id=bench_envs:SlowCartPole-v1", "trigger=never", "episodes=1000"]
    slow_rlrec = {
        "rlrec N=1": tuple(slow),
        "rlrec env.num_envs=2 async": (*slow, "env.num_envs=2", "env.vectorization=async"),
        "rlrec workers=2": (*slow, "workers=2"),
    }
    slow_runs = {
        "Gymnasium plain loop (N=1)": lambda: baseline(
            "vector", "--env", "SlowCartPole-v1", "--num-envs", "1", "--episodes", "1000"
        ),
        "Gymnasium async vector env, N=2": lambda: baseline(
            "vector", "--env", "SlowCartPole-v1", "--num-envs", "2", "--episodes", "1000"
        ),
        **{name: (lambda o=o: rlrec(*o)) for name, o in slow_rlrec.items()},
    }
    names = list(slow_runs)
    slow_runs = with_old(slow_runs, slow_rlrec)
    runs = interleaved(slow_runs, args.repeats)
    print(
        f"\n1,000 random episodes of CartPole burning 1 ms of CPU a step, whole process "
        f"(median of {args.repeats}):"
    )
    for name in names:
        base = "rlrec N=1" if name.startswith("rlrec") else "Gymnasium plain loop (N=1)"
        print(
            f"  {name:38s} {median(runs[name]):6.2f} s   {base} / this = "
            f"{median(runs[base]) / median(runs[name]):.2f}x"
        )
    print("  targets: rlrec async N=2 at least 1.35x, rlrec workers=2 at least 1.7x")
    print_against(runs, list(slow_rlrec))
    async_filming(args)


def async_filming(args: argparse.Namespace) -> None:
    """Filming some of an async vector env's sub-environments: only their processes are asked
    for frames (Gymnasium's ``render`` asks all, and every frame crosses a pipe)."""
    some = ["env.num_envs=3", "env.vectorization=async", "episodes=300", "sinks=[parquet]"]
    some_rlrec = {
        "rlrec async N=3, no film": (*some, "trigger=never"),
        "rlrec async N=3, every 10th filmed": (*some, "trigger=periodic", "trigger.period=10"),
        "rlrec async N=3, every one filmed": (*some, "trigger=every"),
    }
    some_runs = with_old({k: (lambda o=o: rlrec(*o)) for k, o in some_rlrec.items()}, some_rlrec)
    runs = interleaved(some_runs, args.repeats)
    base = median(runs["rlrec async N=3, no film"])
    print(f"\n300 random CartPole episodes on 3 async sub-environments (median of {args.repeats}):")
    for name in some_rlrec:
        print(
            f"  {name:38s} {median(runs[name]):6.2f} s   this / no film = "
            f"{median(runs[name]) / base:.2f}x"
        )
    print_against(runs, list(some_rlrec))


def trackers(args: argparse.Namespace) -> None:
    """Issues 14 and 15: what each tracker sink adds to each episode of the loop, what the MLflow
    server spends, and what sampling memory costs.

    The loop is timed by a sink of the benchmark's own (``bench_sinks.LoopClock``) from the first
    finished episode to the last: import, start and the final flush fall outside, as the issue
    asks. Whole-process times are reported beside.
    """
    episodes = 20_000
    server = MlflowServer()
    atexit.register(server.stop)
    configs = {
        "sinks=[parquet]": ("sinks=[parquet]",),
        "sinks=[parquet,tensorboard]": ("sinks=[parquet,tensorboard]",),
        "... own_process=true": (
            "sinks=[parquet,tensorboard]",
            "sinks.tensorboard.own_process=true",
        ),
        "sinks=[parquet,wandb] (offline)": ("sinks=[parquet,wandb]", "sinks.wandb.mode=offline"),
        "sinks=[parquet,mlflow] (local server)": (
            "sinks=[parquet,mlflow]",
            f"sinks.mlflow.tracking_uri={server.uri}",
        ),
        "sinks=[parquet] memory_every_s=0": ("sinks=[parquet]", "memory_every_s=0"),
    }
    if OLD is not None:  # each tracker's cost against the --against commit's, interleaved
        configs |= {f"{name} (old)": configs[name] for name in list(configs)[:5]}
    loops: dict[str, list[str]] = {name: [] for name in configs}  # the clocks' files

    def clocked(name: str) -> list[str]:
        fd, out = tempfile.mkstemp(prefix="rlrec-loop-", suffix=".json")
        os.close(fd)
        loops[name].append(out)
        clock = ("+sinks.clock._target_=bench_sinks.LoopClock", f"+sinks.clock.out={out}")
        overrides = ("trigger=never", f"episodes={episodes}", *configs[name], *clock)
        if name.endswith(" (old)"):
            cmd = rlrec_in(*overrides, root=OLD)[0][2:]  # without its env PYTHONPATH=...
            return ["env", f"PYTHONPATH={SCRIPTS}{os.pathsep}{OLD}", *cmd]
        return ["env", f"PYTHONPATH={SCRIPTS}", *rlrec(*overrides)]

    runs = interleaved({name: (lambda n=name: clocked(n)) for name in configs}, args.stats_repeats)
    per_episode, spread = {}, {}
    for name, files in loops.items():
        spans = [json.loads(Path(f).read_text()) for f in files]
        each = [s["loop_s"] / s["episodes"] * 1e6 for s in spans]
        per_episode[name], spread[name] = statistics.median(each), (min(each), max(each))
    print(
        f"\n{episodes:,} random CartPole episodes, stats only (trigger=never), "
        f"median of {args.stats_repeats}:"
    )
    print(f"  {'':36s} whole process   loop, us an episode (min-max)")
    for name in configs:
        low, high = spread[name]
        print(
            f"  {name:36s} {median(runs[name]):9.2f} s   {per_episode[name]:9.1f} "
            f"({low:.0f}-{high:.0f})"
        )
    for name in list(configs)[1:5]:
        extra = per_episode[name] - per_episode["sinks=[parquet]"]
        print(f"  {name} adds {extra:.1f} us an episode to the loop (target <= 25 us)")
        if OLD is not None:
            before = per_episode[f"{name} (old)"] - per_episode["sinks=[parquet] (old)"]
            print(f"    {OLD.name}: {before:.1f} us an episode")
    cpu = server.cpu_seconds() / args.stats_repeats
    print(f"  the MLflow server used {cpu:.1f} s of CPU a run ({episodes:,} episodes)")
    server.stop()
    ratio = per_episode["sinks=[parquet]"] / per_episode["sinks=[parquet] memory_every_s=0"]
    print(f"  memory sampling on / off: {ratio:.3f}x the loop (within the spread above)")
    _memory_share(per_episode["sinks=[parquet]"])
    _tensorboard_work()

    film = ("trigger=periodic", "trigger.period=250", "episodes=10000")
    filmed = {
        "40 films, sinks=[parquet]": lambda: rlrec(*film),
        "40 films, sinks=[parquet,tensorboard]": lambda: rlrec(
            *film, "sinks=[parquet,tensorboard]"
        ),
    }
    runs = interleaved(filmed, args.repeats)
    print(
        f"\n10,000 episodes, 40 filmed (a GIF of each for TensorBoard), median of {args.repeats}:"
    )
    for name in filmed:
        print(f"  {name:40s} {median(runs[name]):6.2f} s whole process")


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 (a free port, SQLite, an artifact folder of its own)."""

    def __init__(self) -> None:
        import socket
        import urllib.request

        import psutil

        folder = Path(tempfile.mkdtemp(prefix="rlrec-bench-mlflow-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.uri = f"http://127.0.0.1:{port}"
        cmd = [PY, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--workers", "1"]
        cmd += ["--artifacts-destination", str(folder / "artifacts")]
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("the MLflow server did not start") from None
                time.sleep(0.25)
        self._tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        self._cpu_at_start = self._cpu()

    def _cpu(self) -> float:
        total = 0.0
        for process in self._tree:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except Exception:
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU seconds the server used since it was ready."""
        return self._cpu() - self._cpu_at_start

    def stop(self) -> None:
        if self.proc.poll() is None:
            for process in reversed(self._tree):
                with contextlib.suppress(Exception):
                    process.terminate()
            self.proc.wait(30)


def wrappers(args: argparse.Namespace) -> None:
    """Issue 16: the drop-in wrappers against Gymnasium's in the same loop (only the import
    differs), and the Recorder around the same loop."""
    out = tempfile.mkdtemp(prefix="wrappers-bench-")
    rlrec_wrappers = ("--wrappers", "rlrec")
    guide = ("guide", "--episodes", "10000")
    stats = {
        "G gymnasium RecordEpisodeStatistics": lambda: baseline(*guide),
        "O rlrec RecordEpisodeStatistics": lambda: baseline(*guide, *rlrec_wrappers),
        "C Recorder, Parquet only": lambda: baseline(
            "recorder", "--episodes", "10000", "--out", tempfile.mkdtemp(dir=out)
        ),
    }
    runs = interleaved(stats, args.stats_repeats)
    g, o, c = (median(runs[k]) for k in stats)
    print(
        f"\nStats only, the guide's loop, 10,000 random CartPole episodes, whole process "
        f"(median of {args.stats_repeats}):"
    )
    for name in stats:
        print(f"  {name:38s} {median(runs[name]):6.2f} s")
    print(f"  O / G = {o / g:.3f}x   (target <= 1.1x)")
    print(f"  C / G = {c / g:.3f}x   (the whole run directory: seeds, digest, Parquet, report)")

    def film(*extra: str) -> list[str]:
        return baseline("recordvideo", "--out", tempfile.mkdtemp(dir=out), *extra)

    one = ("--episodes", "1", "--max-steps", "1")
    recorder = ("recorder", "--trigger", "every", "--episodes", "5", "--max-steps", "500")
    filming = {
        "A gymnasium RecordVideo": lambda: film(),
        "A start-up (1 step)": lambda: film(*one),
        "B rlrec RecordVideo": lambda: film(*rlrec_wrappers),
        "B start-up (1 step)": lambda: film(*one, *rlrec_wrappers),
        "C Recorder": lambda: baseline(*recorder, "--out", tempfile.mkdtemp(dir=out)),
        "C start-up (1 step)": lambda: baseline(
            "recorder", "--trigger", "every", *one, "--out", tempfile.mkdtemp(dir=out)
        ),
        "R render only": lambda: baseline("render"),
        "R start-up (1 step)": lambda: baseline("render", *one),
    }
    runs = interleaved(filming, args.repeats)
    loop = {
        k[0]: median(runs[k]) - median(runs[f"{k[0]} start-up (1 step)"])
        for k in runs
        if "start-up" not in k
    }
    print(
        f"\nFilming 5 CartPole episodes x 500 steps, every episode "
        f"(median of {args.repeats}, start-up subtracted):"
    )
    for name in ("A gymnasium RecordVideo", "B rlrec RecordVideo", "C Recorder", "R render only"):
        print(f"  {name:26s} {loop[name[0]]:7.2f} s   (whole process {median(runs[name]):.2f} s)")
    print(f"  A / B = {loop['A'] / loop['B']:.2f}x   (target >= 1.8x)")
    print(f"  B / R = {loop['B'] / loop['R']:.2f}x   (target <= 1.2x of rendering alone)")
    print(f"  C / R = {loop['C'] / loop['R']:.2f}x   (the Recorder: Parquet, digest, actions too)")

    print("\nMemory, one filmed 5,000-step episode (peak RSS):")
    long = ("--episodes", "1", "--max-steps", "5000", "--policy", "balance_long")
    short = ("--episodes", "1", "--max-steps", "500", "--policy", "balance_long")
    b_short = measure(film(*short, *rlrec_wrappers))
    b_long = measure(film(*long, *rlrec_wrappers))
    b_tree = measure(film(*long, *rlrec_wrappers), track_tree=True)
    print(f"  B rlrec RecordVideo,   500 steps: the loop's process {b_short.peak_mb:6.0f} MB")
    print(
        f"  B rlrec RecordVideo, 5,000 steps: the loop's process {b_long.peak_mb:6.0f} MB "
        f"(target < 150 MB); with the encoder {b_tree.peak_mb:.0f} MB"
    )
    if not args.quick:
        a_long = measure(film(*long))
        print(f"  A gymnasium RecordVideo, 5,000 steps: {a_long.peak_mb:6.0f} MB")
        print(f"  A / B = {a_long.peak_mb / b_long.peak_mb:.1f}x the memory")
    _vector_wrappers(args, out)
    shutil.rmtree(out, ignore_errors=True)


def envs(args: argparse.Namespace) -> None:
    """Issue 18: filming every episode of HalfCheetah (rendering-bound) and Pong (stepping-bound)
    against rendering alone and Gymnasium's RecordVideo; memory of long MuJoCo films; the digest
    of an Atari observation."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # the baselines need a backend; rlrec checks it
    out = tempfile.mkdtemp(prefix="envs-bench-")
    _film_env(args, out, "HalfCheetah-v5", episodes=1, steps=300, target=1.15)
    _film_env(args, out, "ALE/Pong-v5", episodes=20, steps=0, target=1.2)
    _envs_memory(out)
    _digest_costs()
    shutil.rmtree(out, ignore_errors=True)


def _film_env(
    args: argparse.Namespace, out: str, env_id: str, episodes: int, steps: int, target: float
) -> None:
    """Every episode of ``env_id`` filmed (``steps`` a episode, 0: the game's own end) by rlrec
    and by Gymnasium's RecordVideo, against the same loop rendering alone."""
    # module:Id registers the ALE ids in a commit before issue 18 too (--against)
    as_id = f"ale_py:{env_id}" if env_id.startswith("ALE/") else env_id
    size = ("--episodes", str(episodes), "--max-steps", str(steps))
    one = ("--episodes", "1", "--max-steps", "1")
    film = (f"env.id={as_id}", "trigger=every")
    rlrec_runs = {
        "N rlrec, every episode": (
            *film,
            f"env.max_episode_steps={steps or 'null'}",
            f"episodes={episodes}",
        ),
        "N start-up (1 step)": (*film, "env.max_episode_steps=1"),
    }

    def loop(kind: str, *more: str) -> list[str]:
        videos = ("--out", tempfile.mkdtemp(dir=out)) if kind == "recordvideo" else ()
        return baseline(kind, "--env", env_id, "--policy", "random", *videos, *more)

    commands = {
        "R render only": lambda: loop("render", *size),
        "R start-up (1 step)": lambda: loop("render", *one),
        "G gymnasium RecordVideo": lambda: loop("recordvideo", *size),
        "G start-up (1 step)": lambda: loop("recordvideo", *one),
        **{name: (lambda o=o: rlrec(*o)) for name, o in rlrec_runs.items()},
    }
    runs = interleaved(with_old(commands, rlrec_runs), args.repeats)
    names = ("R render only", "G gymnasium RecordVideo", "N rlrec, every episode")
    whole = {name: median(runs[name]) for name in names}
    loops = {name: whole[name] - median(runs[f"{name[0]} start-up (1 step)"]) for name in names}
    r, g, n = loops.values()
    steps_text = f"{steps} steps" if steps else "to the game's end"
    print(
        f"\n{env_id}, {episodes} episode(s) {steps_text}, random actions, every episode filmed "
        f"(median of {args.repeats}; loop = whole process - a 1-step run's):"
    )
    for name, seconds in loops.items():
        print(f"  {name:26s} loop {seconds:7.2f} s   whole process {whole[name]:7.2f} s")
    ratio = whole["N rlrec, every episode"] / whole["R render only"]
    print(f"  N / R = {n / r:.3f}x loop, {ratio:.3f}x whole process   (target <= {target}x)")
    print(f"  G / N = {g / n:.2f}x loop   (Gymnasium's RecordVideo over rlrec)")
    print_against(runs, ["N rlrec, every episode"])


def _envs_memory(out: str) -> None:
    """Peak memory of one filmed HalfCheetah episode, 250 and 1,000 steps: rlrec's processes
    together against the bare Gymnasium loop that renders the same frames."""
    cheetah = ("--env", "HalfCheetah-v5", "--policy", "random", "--episodes", "1")
    bare = measure(baseline("render", *cheetah, "--max-steps", "1000"))
    peaks = {}
    for steps in (250, 1000):
        overrides = ("env.id=HalfCheetah-v5", "trigger=every", f"env.max_episode_steps={steps}")
        peaks[steps] = measure(rlrec(*overrides), track_tree=True).peak_mb
    print("\nMemory, one filmed HalfCheetah episode (480x480 frames), peak RSS:")
    print(f"  bare Gymnasium loop rendering 1,000 steps     {bare.peak_mb:6.0f} MB")
    for steps, peak in peaks.items():
        print(f"  rlrec, {steps:5,d} steps (run + encoder processes) {peak:6.0f} MB")
    print(
        f"  rlrec 1,000 steps - bare = {peaks[1000] - bare.peak_mb:+.0f} MB (target <= +150 MB); "
        f"1,000 - 250 steps = {peaks[1000] - peaks[250]:+.0f} MB (flat)"
    )


def _digest_costs() -> None:
    """What hashing one Atari observation costs, alone and between emulator steps."""
    import hashlib

    import ale_py
    import gymnasium as gym
    import xxhash

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    hashes = {
        "none": None,
        "BLAKE2b (before)": lambda obs: hashlib.blake2b(obs, digest_size=16).digest(),
        "XXH3-128": xxhash.xxh3_128_digest,
        "XXH64 (rlrec)": xxhash.xxh64_digest,
    }
    per_step = dict.fromkeys(hashes, 0.0)
    steps = dict.fromkeys(hashes, 0)
    for seed in range(4):  # the hashes take turns episode by episode
        for name, digest in hashes.items():
            env.action_space.seed(seed)
            obs, _ = env.reset(seed=seed)
            start, done = time.perf_counter(), False
            while not done:
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if digest is not None:
                    digest(obs)
                steps[name] += 1
                done = terminated or truncated
            per_step[name] += time.perf_counter() - start
    print("\nDigest of a Pong observation (210x160x3), per step of 4 Pong episodes:")
    floor = per_step["none"] / steps["none"]
    for name in hashes:
        step_us = per_step[name] / steps[name] * 1e6
        print(f"  {name:18s} {step_us:6.1f} us a step  (+{step_us - floor * 1e6:5.1f} us)")
    env.close()


def scale(args: argparse.Namespace) -> None:
    """Issue 20: a sweep of short jobs on two workers against the basic launcher, a short run's
    start-up against a bare Gymnasium script (where it goes), a Ray sweep's cost per job. Issue
    19: 100,000 episodes as one run and as 2 shards on joblib; the merge alone."""
    _short_sweeps(args)
    _startup(args)
    _ray_per_job(args)
    if not args.quick:
        _shards(args)


def _short_sweeps(args: argparse.Namespace) -> None:
    grid = ("seed=range(0,20)", "episodes=200", "trigger=never", "sinks=[parquet]")
    joblib = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    commands = {
        "basic launcher": lambda: rlrec_sweep(*grid)[0],
        "joblib, 2 workers": lambda: rlrec_sweep(*joblib, *grid)[0],
    }
    if OLD is not None:
        commands |= {
            "basic launcher (old)": lambda: rlrec_sweep(*grid, root=OLD)[0],
            "joblib, 2 workers (old)": lambda: rlrec_sweep(*joblib, *grid, root=OLD)[0],
        }
    runs = interleaved(commands, args.repeats)
    print(f"\n20 jobs x 200 stats-only CartPole episodes, whole process, median of {args.repeats}:")
    for tree in ("", " (old)") if OLD is not None else ("",):
        basic = median(runs[f"basic launcher{tree}"])
        two = median(runs[f"joblib, 2 workers{tree}"])
        print(
            f"  basic launcher{tree:6s} {basic:6.2f} s   joblib, 2 workers{tree:6s} {two:6.2f} s"
            f"   basic / joblib = {basic / two:.2f}x   (target >= 1.5x)"
        )


#: What a short run's start-up is measured against: Gymnasium alone.
BARE = "import gymnasium as gym; gym.make('CartPole-v1').reset(seed=0)"
#: Times the phases of ``python run.py`` in its own process: each wrapped function adds its
#: seconds to a phase; the rest of ``main`` is Hydra's own work around the job.
_PHASES = """
import atexit, json, sys, time
start = time.perf_counter()
import rlrec.cli
imported = time.perf_counter()
from hydra._internal.hydra import Hydra
import hydra.core.utils as hydra_utils
import rlrec.runner
spent = {}
def timed(name, f):
    def g(*a, **k):
        s = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - s
    return g
Hydra.compose_config = timed("Hydra composes the config", Hydra.compose_config)
hydra_utils._save_config = timed("Hydra writes its record of the run", hydra_utils._save_config)
rlrec.cli.record = timed("rlrec records the episode (build, run, files)", rlrec.cli.record)
def report():  # an exit handler: rlrec's CLI ends with os._exit once they have run
    end = time.perf_counter()
    spent["import rlrec.cli (Hydra, pyarrow, Gymnasium, rlrec)"] = imported - start
    spent["Hydra's other work (plugins, logging, job set-up)"] = end - imported - sum(
        v for k, v in spent.items() if not k.startswith("import"))
    sys.stderr.write("PHASES " + json.dumps(spent) + "\\n")
atexit.register(report)
sys.argv = ["run.py", *sys.argv[1:]]
rlrec.cli.main()
"""


def _startup(args: argparse.Namespace) -> None:
    overrides = ("trigger=never", "episodes=1", "sinks=[parquet]")
    commands = {"bare Gymnasium": lambda: [PY, "-c", BARE], "rlrec": lambda: rlrec(*overrides)}
    commands = with_old(commands, {"rlrec": overrides})
    commands["python -c pass"] = lambda: [PY, "-c", "pass"]
    runs = interleaved(commands, max(args.stats_repeats, 7))
    bare, ours = median(runs["bare Gymnasium"]), median(runs["rlrec"])
    print(f"\nStart-up of python run.py {' '.join(overrides)} (median of {len(runs['rlrec'])}):")
    print(f"  bare Gymnasium ({BARE}) {bare:.2f} s")
    print(f"  rlrec {ours:.2f} s = {ours / bare:.2f}x bare, {ours - bare:+.2f} s"
          f"   (target: <= 0.35 s where bare takes 0.15 s: 2.3x, +0.20 s)")  # fmt: skip
    print_against(runs, ["rlrec"])
    phases: list[dict[str, float]] = []
    for _ in range(5):
        out = Path(tempfile.mkdtemp(prefix="rlrec-bench-"))
        cmd = [PY, "-c", _PHASES, *overrides, f"hydra.run.dir={out}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        line = next(x for x in proc.stderr.splitlines() if x.startswith("PHASES "))
        phases.append(json.loads(line.removeprefix("PHASES ")))
        shutil.rmtree(out, ignore_errors=True)
    interpreter = median(runs["python -c pass"])
    accounted = interpreter + sum(statistics.median(p[k] for p in phases) for k in phases[0])
    print("  where it goes (median of 5, in the run's own process):")
    print(f"    {'the interpreter and site-packages (python -c pass)':56s} {interpreter:.3f} s")
    for name in phases[0]:
        print(f"    {name:56s} {statistics.median(p[name] for p in phases):.3f} s")
    print(f"    {'exit, and what the clocks miss':56s} {ours - accounted:.3f} s")


def _ray_per_job(args: argparse.Namespace) -> None:
    """A Ray sweep's cost per job on a running local cluster (two CPUs, on 127.0.0.1): the
    marginal wall time of a one-episode job, from sweeps of 20 and 40 jobs, against joblib's."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print('\nRay: not installed (pip install -e ".[ray]"), skipped')
        return
    loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    temp = tempfile.mkdtemp(prefix="rlrec-ray-")
    port = _free_port()
    head = [str(Path(PY).parent / "ray"), "start", "--head", "--block", "--num-cpus=2"]
    head += ["--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false"]
    head += ["--disable-usage-stats", f"--temp-dir={temp}"]
    cluster = subprocess.Popen(
        head,
        env=os.environ | loopback,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    launchers = {
        "Ray": ("hydra/launcher=ray",),
        "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
    }
    sizes = (20, 40)
    one_episode = ("episodes=1", "trigger=never", "sinks=[parquet]")
    commands = {
        f"{name} {n}": lambda e=extra, n=n: rlrec_sweep(*e, f"seed=range(0,{n})", *one_episode)[0]
        for name, extra in launchers.items()
        for n in sizes
    }
    try:
        _wait_for_port(port)
        time.sleep(2)  # the raylet registers after the GCS listens
        os.environ.update(loopback | {"RAY_ADDRESS": f"127.0.0.1:{port}"})
        runs = interleaved(commands, args.repeats)
    finally:
        for name in ("RAY_ADDRESS", *loopback):
            os.environ.pop(name, None)
        os.killpg(cluster.pid, 15)
        cluster.wait(60)
        subprocess.run(["pkill", "-9", "-f", temp], check=False)
        shutil.rmtree(temp, ignore_errors=True)
    print(f"\nOne-episode jobs on a running Ray cluster of 2 CPUs, median of {args.repeats}:")
    for name in launchers:
        small, large = median(runs[f"{name} {sizes[0]}"]), median(runs[f"{name} {sizes[1]}"])
        per_job = (large - small) / (sizes[1] - sizes[0])
        print(
            f"  {name:7s} {sizes[0]} jobs {small:6.2f} s, {sizes[1]} jobs {large:6.2f} s: "
            f"{per_job * 1000:4.0f} ms of wall time a job ({2 * per_job * 1000:.0f} ms of a CPU), "
            f"{small - sizes[0] * per_job:.2f} s fixed"
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the Ray head node did not start") from None
            time.sleep(0.2)


def _shards(args: argparse.Namespace) -> None:
    stats = ("episodes=100000", "trigger=never", "sinks=[parquet]")
    shards = ("shard=range(0,2)", "shards=2", *stats)
    joblib = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    commands = {
        "S one run": lambda: rlrec(*stats),
        "H 2 shards on joblib, merged": lambda: rlrec_sweep(*shards, *joblib)[0],
    }
    runs = interleaved(commands, args.repeats)
    one, sharded = (median(runs[name]) for name in commands)
    print(f"\n100,000 stats-only CartPole episodes, whole process (median of {args.repeats}):")
    for name in commands:
        print(f"  {name:30s} {median(runs[name]):7.2f} s")
    print(f"  S / H = {one / sharded:.2f}x   (target >= 1.5x)")

    filmed = ("trigger=periodic", "trigger.period=500", "sinks=[parquet]")
    command, sweep = rlrec_sweep(
        "shard=range(0,2)", "shards=2", "episodes=100000", *filmed, *joblib,
        "~hydra.callbacks.summarize_sweep",  # merged below, timed on its own
    )  # fmt: skip
    measure(command)
    merge = measure([PY, "-m", "rlrec.merge", str(sweep)])
    videos = len(list((sweep / "merged" / "videos").glob("*.mp4")))
    print(
        f"\nThe merge alone (rlrec-merge), 100,000 rows and {videos} films from 2 shards: "
        f"{merge.seconds:.2f} s, peak {merge.peak_mb:.0f} MB"
    )
    shutil.rmtree(sweep.parent, ignore_errors=True)


def _vector_wrappers(args: argparse.Namespace, out: str) -> None:
    """Issue 17: on a SyncVectorEnv of 8 CartPoles, the vector statistics wrappers and the
    vector Recorder; filming sub-environment 0 against rendering it alone."""

    def loop(wrappers: str, *extra: str) -> list[str]:
        cmd = ("vector-loop", "--num-envs", "8", "--wrappers", wrappers, *extra)
        return baseline(*cmd, "--out", tempfile.mkdtemp(dir=out))

    stats = {
        "G gymnasium vector RecordEpisodeStatistics": lambda: loop("gymnasium"),
        "O rlrec vector RecordEpisodeStatistics": lambda: loop("rlrec"),
        "C vector Recorder, Parquet only": lambda: loop("recorder"),
    }
    runs = interleaved(stats, args.stats_repeats)
    g, o, c = (median(runs[k]) for k in stats)
    print(
        f"\nVector env, 8 CartPole sub-environments, 100,000 steps of random actions, stats "
        f"only, whole process (median of {args.stats_repeats}):"
    )
    for name in stats:
        print(f"  {name:44s} {median(runs[name]):6.2f} s")
    print(f"  O / G = {o / g:.3f}x   (target <= 1.1x)")
    print(f"  C / G = {c / g:.3f}x   (target <= 1.25x)")

    steps, one = ("--steps", "10000"), ("--steps", "1")
    films = {
        "F vector Recorder filming sub-env 0": lambda: loop(
            "recorder", "--trigger", "every", *steps
        ),
        "F start-up (1 step)": lambda: loop("recorder", "--trigger", "every", *one),
        "R rendering sub-env 0 alone": lambda: loop("none", "--render-first", *steps),
        "R start-up (1 step)": lambda: loop("none", "--render-first", *one),
    }
    runs = interleaved(films, args.repeats)
    f_loop = median(runs["F vector Recorder filming sub-env 0"]) - median(
        runs["F start-up (1 step)"]
    )
    r_loop = median(runs["R rendering sub-env 0 alone"]) - median(runs["R start-up (1 step)"])
    print(
        f"\nFilming sub-environment 0 of 8 (every episode it runs), 10,000 steps (median of "
        f"{args.repeats}, start-up subtracted):"
    )
    print(f"  F vector Recorder filming sub-env 0   {f_loop:6.2f} s")
    print(f"  R rendering sub-env 0 alone           {r_loop:6.2f} s")
    print(f"  F / R = {f_loop / r_loop:.2f}x   (target <= 1.2x)")


def _memory_share(loop_us: float) -> None:
    """What sampling costs, from its parts measured here: the check after every episode, and a
    sample (with the lookups of the process tree it does) once a second."""
    import timeit

    from rlrec.memory import MemoryMonitor
    from rlrec.rundir import RunDir

    monitor = MemoryMonitor(RunDir(tempfile.mkdtemp()), every_s=1.0)
    check_us = min(timeit.repeat(lambda: monitor.due(time.monotonic()), number=100_000)) * 10
    start = time.perf_counter()
    for i in range(2000):
        monitor.sample(i)
    sample_us = (time.perf_counter() - start) / 2000 * 1e6
    per_second = check_us * (1e6 / loop_us) + sample_us  # us spent sampling a second of run
    print(
        f"  memory sampling, from its parts: a check after each episode {check_us * 1000:.0f} ns,"
        f" a sample {sample_us:.0f} us a second: {per_second / 1e4:.3f}% of the run (target <= 1%)"
    )


def _tensorboard_work() -> None:
    """In this process: the tensorboard sink's work for an episode, on its thread."""
    from rlrec.sinks.tensorboard import TensorBoardSink
    from rlrec.sinks.tracker import EpisodeBatch

    sink = TensorBoardSink()
    sink.start(_bench_run(Path(tempfile.mkdtemp())), None)
    rows = [(i, 0.0, 20.0, 20, 0.001, None) for i in range(10_000)]
    start = time.perf_counter()
    sink.log_episodes(EpisodeBatch(rows))
    sink.commit()
    per = (time.perf_counter() - start) / len(rows) * 1e6
    print(f"  the tensorboard thread's work: {per:.1f} us an episode (one event of 3 values)")
    sink.finish("complete")


def _bench_run(folder: Path):
    from rlrec.records import RunInfo

    return RunInfo(folder, "CartPole-v1", 0, 0, 10_000, {})


def contract(args: argparse.Namespace) -> None:
    """Issue 30: what the contract costs per episode (seeds, digest, actions, Parquet rows), stats
    only: the Recorder around the guide's loop and ``run.py`` against the guide's loop seeded as
    the contract seeds it, 10,000 random CartPole episodes; each also with start-up subtracted
    (a one-episode run of the same command). With ``--against``, the old tree's too."""
    out = tempfile.mkdtemp(prefix="contract-bench-")
    episodes = ("--episodes", "10000")

    def recorder(root: Path, *more: str) -> Callable[[], list[str]]:
        def command() -> list[str]:
            folder = tempfile.mkdtemp(dir=out)
            script = root / "scripts" / "bench_baselines.py"
            env = ["env", f"PYTHONPATH={root}"] if root != ROOT else []
            return [*env, PY, str(script), "recorder", *more, "--out", folder]

        return command

    commands: dict[str, Callable[[], list[str]]] = {
        "seeded guide loop": lambda: baseline("guide", *episodes, "--contract-seeds"),
        "seeded guide loop 1": lambda: baseline("guide", "--episodes", "1", "--contract-seeds"),
        "Recorder": recorder(ROOT, *episodes),
        "Recorder 1": recorder(ROOT, "--episodes", "1"),
        "run.py": lambda: rlrec("trigger=never", "episodes=10000"),
        "run.py 1": lambda: rlrec("trigger=never", "episodes=1"),
    }
    if OLD is not None:
        commands |= {
            "Recorder (old)": recorder(OLD, *episodes),
            "Recorder 1 (old)": recorder(OLD, "--episodes", "1"),
            "run.py (old)": lambda: old("trigger=never", "episodes=10000"),
            "run.py 1 (old)": lambda: old("trigger=never", "episodes=1"),
        }
    runs = interleaved(commands, args.stats_repeats)
    whole = {name: median(r) for name, r in runs.items()}
    guide, guide_loop = (
        whole["seeded guide loop"],
        whole["seeded guide loop"] - whole["seeded guide loop 1"],
    )
    print(
        f"\nStats only, 10,000 random CartPole episodes (median of {args.stats_repeats}); "
        f"the seeded guide loop: {guide:.2f} s whole, {guide_loop:.2f} s without start-up"
    )
    print(f"  {'':22s} {'whole':>8s} {'/ guide':>8s} {'episodes':>9s} {'/ guide':>8s}")
    for name in ("Recorder", "run.py", "Recorder (old)", "run.py (old)"):
        if name not in whole:
            continue
        one = whole[name.replace(" (old)", " 1 (old)") if "(old)" in name else f"{name} 1"]
        loop = whole[name] - one
        print(
            f"  {name:22s} {whole[name]:7.2f}s {whole[name] / guide:7.3f}x "
            f"{loop:8.2f}s {loop / guide_loop:7.3f}x"
        )
    print("  target: the episodes (start-up subtracted) at most 1.15x the seeded guide loop's")
    shutil.rmtree(out, ignore_errors=True)


def sync(args: argparse.Namespace) -> None:
    """Catching a tracker up with ``rlrec-sync`` against logging live (issue 34): 10,000
    CartPole episodes, cut at 60 steps, filmed never. Live: the run with the tracker, and the
    run without it (the tracker's share is the difference). Catch-up: ``rlrec-sync`` of the run
    recorded without a tracker, from its folder alone."""
    import shutil

    sync_cli = str(Path(PY).parent / "rlrec-sync")
    common = ("episodes=10000", "env.max_episode_steps=60", "trigger=never")
    for name in ("tensorboard", "mlflow"):
        live_s, bare_s, sync_s = [], [], []
        for _ in range(args.repeats):
            store = Path(tempfile.mkdtemp(prefix="rlrec-bench-mlflow-"))
            uri = f"sqlite:///{store / 'mlflow.db'}"
            extra = (f"sinks.mlflow.tracking_uri={uri}",) if name == "mlflow" else ()
            cmd, _ = rlrec_in(*common, f"sinks=[parquet,{name}]", *extra)
            live_s.append(measure(cmd).seconds)
            cmd, bare = rlrec_in(*common)
            bare_s.append(measure(cmd).seconds)
            extra = (f"sinks.mlflow.tracking_uri={uri}",) if name == "mlflow" else ()
            sync_s.append(measure([sync_cli, str(bare), "--sink", name, *extra]).seconds)
            shutil.rmtree(store, ignore_errors=True)
        live, no_tracker, synced = (statistics.median(x) for x in (live_s, bare_s, sync_s))
        print(
            f"{name}: run with it {live:.2f} s, without it {no_tracker:.2f} s (its share live "
            f"{live - no_tracker:.2f} s); rlrec-sync of 10,000 episodes {synced:.2f} s = "
            f"{synced / live:.2f} x the live run with it"
        )


def index(args: argparse.Namespace) -> None:
    """The index of 1,000 runs (issue 35): its first build, a second one (nothing new), and
    how long Chromium takes to open it and how many bytes it loads."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlrec.rundir import RunDir

    root = Path(tempfile.mkdtemp(prefix="rlrec-bench-index-"))
    rng = np.random.default_rng(0)
    for i in range(1000):
        run = root / f"day{i // 100}" / f"run{i:04d}"
        run.mkdir(parents=True)
        returns = rng.normal(100, 20, 500)
        table = pa.table({"episode": np.arange(500), "return": returns,
                          "video": pa.array([None] * 500, pa.string())})  # fmt: skip
        pq.write_table(table, RunDir(run).episodes)
        summary = {"status": "complete", "n": 500, "mean": float(returns.mean()),
                   "std": float(returns.std(ddof=1)), "env_id": "CartPole-v1"}  # fmt: skip
        RunDir(run).summary_file.write_text(json.dumps(summary))
    report = str(Path(PY).parent / "rlrec-report")
    first = measure([report, str(root)]).seconds
    second = measure([report, str(root)]).seconds
    print(f"index of 1,000 runs: first build {first:.2f} s, second build {second:.2f} s "
          f"({second / first:.2f} x)")  # fmt: skip
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from tests.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        times, loaded = [], []
        for _ in range(args.repeats):
            page = browser.new_page()
            page.on("requestfinished", lambda r: loaded.append(r.url))
            start = time.perf_counter()
            page.goto((root / "index.html").as_uri(), wait_until="load")
            page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length")
            times.append(time.perf_counter() - start)
            page.close()
        browser.close()
    weight = sum(Path(u.removeprefix("file://")).stat().st_size for u in set(loaded))
    print(f"opening it in Chromium: {statistics.median(times):.2f} s (median of {len(times)}), "
          f"{weight / 1e6:.2f} MB loaded")  # fmt: skip


def aggregates(args: argparse.Namespace) -> None:
    """Claims across tasks (issue 36): 10 envs x 10 seeds x 5 algorithms, 50,000 bootstrap
    resamples of every interval (rliable's default), in one process."""
    import numpy as np

    from rlrec import aggregate as agg

    rng = np.random.default_rng(0)
    scores = [
        agg.RunScore(f"Env{e}-v0", f"policy=p{a}", s, float(rng.normal(a, 1)), (0.0, 5.0))
        for a in range(5)
        for e in range(10)
        for s in range(10)
    ]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        agg.aggregate(scores, reps=50_000, seed=0)
        times.append(time.perf_counter() - start)
    print(
        f"aggregates over 10 envs x 10 seeds x 5 algorithms, 50,000 resamples: "
        f"{statistics.median(times):.2f} s (median of {len(times)}; {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "suite",
        choices=[
            "core",
            "codecs",
            "report",
            "sweep",
            "adaptive",
            "training",
            "reliability",
            "parallel",
            "trackers",
            "wrappers",
            "envs",
            "scale",
            "pixels",
            "contract",
            "sync",
            "index",
            "aggregates",
        ],
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each filming command")
    parser.add_argument("--stats-repeats", type=int, default=5, help="runs of each stats command")
    parser.add_argument("--quick", action="store_true", help="skip Gymnasium's 3.5 GB memory run")
    parser.add_argument(
        "--against", metavar="REV", help="also run a git commit's rlrec, interleaved"
    )
    args = parser.parse_args()
    if args.against:
        global OLD
        OLD = checkout(args.against)
    suites = {
        "core": core,
        "codecs": codecs,
        "report": report,
        "sweep": sweep,
        "adaptive": adaptive,
        "training": training,
        "reliability": reliability,
        "parallel": parallel,
        "trackers": trackers,
        "wrappers": wrappers,
        "envs": envs,
        "scale": scale,
        "pixels": pixels,
        "contract": contract,
        "sync": sync,
        "index": index,
        "aggregates": aggregates,
    }
    suites[args.suite](args)


if __name__ == "__main__":
    main()
