"""Bad input and a full disk: a clear message, never a traceback, and nothing recorded is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from rlrec.build import build
from rlrec.errors import ConfigError
from rlrec.runner import Runner
from tests.conftest import ROOT, compose_config, console_script, decode, run_cli

SCALARS = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["mp4v", "vp9", "best"]),
)
KEYS = [
    "seed",
    "episodes",
    "env.max_episode_steps",
    "video.fps",
    "video.codec",
    "video.name_prefix",
    "success_threshold",
    "success_key",
    "trigger.period",
    "trigger.criterion",
    "trigger.z",
    "trigger.window",
    "trigger.max_videos",
    "trigger.method",
    "policy.lr",
    "policy.gamma",
    "policy.epsilon_decay",
    "checkpoint_every",
    "sinks.parquet.batch_rows",
    "sinks.parquet.flush_seconds",
    "sinks.console.every",
]


def _override(key: str, value: object) -> str:
    if value is None:
        return f"{key}=null"
    if isinstance(value, str):
        return f"{key}='{value}'" if value.isidentifier() else f"{key}={json.dumps(value)}"
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(KEYS),
    value=SCALARS,
    group=st.sampled_from(["trigger=periodic", "trigger=adaptive", "policy=qlearning"]),
)
def test_any_value_either_runs_or_fails_with_the_user_error_message(tmp_path, key, value, group):
    overrides = (
        [group, _override(key, value), "episodes=2", "env.max_episode_steps=5", "sinks=[parquet]"]
        if key != "episodes"
        else [group, _override(key, value), "env.max_episode_steps=5", "sinks=[parquet]"]
    )
    try:
        cfg = compose_config(overrides)
    except (ConfigCompositionException, OmegaConfBaseException):
        return  # Hydra's own parser or schema refused it: Hydra's message, exit 1 (contract)
    try:
        objects = build(cfg, tmp_path / "run")
    except ConfigError as err:
        assert err.key and err.problem and err.fix
        return
    if cfg.episodes > 50:
        objects.close()
        return  # valid, just long: building it is the check
    summary = Runner(objects).run()
    assert summary["status"] == "complete"


def test_an_env_whose_extra_is_missing_names_the_pip_extra(tmp_path):
    # Box2D is installed here ([test]): a child process that cannot import it stands for a
    # machine without it
    code = (
        "import sys; sys.modules['Box2D'] = None\n"
        "from rlrec.build import build\n"
        "from rlrec.errors import ConfigError\n"
        "from tests.conftest import compose_config\n"
        "try:\n"
        f"    build(compose_config(['env=lunarlander', 'trigger=never']), {str(tmp_path)!r})\n"
        "except ConfigError as err:\n"
        "    print(err.key, '|', err.fix)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == 'env.id | install it with pip install "rlrec[box2d]"', done.stderr


@pytest.mark.slow
def test_a_full_disk_ends_the_run_clearly_and_keeps_what_was_recorded(tmp_path):
    run_dir = tmp_path / "run"
    command = (
        f"ulimit -f 3000; exec {sys.executable} {ROOT / 'run.py'} "
        "env.id=tests.envs:NoiseFrameCartPole-v0 trigger=every episodes=8 video.codec=mjpg "
        f"policy=custom policy._target_=tests.policies.LateBalancer hydra.run.dir={run_dir}"
    )
    proc = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "is the disk full?" in proc.stderr and str(run_dir) in proc.stderr
    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    assert episodes["episode"].tolist() == [0, 1, 2, 3, 4]  # the short ones, all of them
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk" in summary["error"]
    videos = sorted(p.name for p in (run_dir / "videos").iterdir())
    assert videos == [f"eval-episode-{i}.avi" for i in range(5)]  # no partial file at all
    for name, length in zip(videos, episodes["length"], strict=True):
        assert decode(run_dir / "videos" / name)[0] == length + 1


@pytest.mark.slow
def test_a_summary_counts_only_the_episodes_on_disk(tmp_path):
    # every row waits for the end (one flush), and that one part is past the file-size limit:
    # nothing reaches the disk, and the summary and the report say so
    run_dir = tmp_path / "run"
    command = (
        f"ulimit -f 24; exec {sys.executable} {ROOT / 'run.py'} trigger=never episodes=3000 "
        f"sinks.parquet.flush_seconds=100000 memory_every_s=0 hydra.run.dir={run_dir}"
    )
    proc = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    on_disk = list((run_dir / "episodes").glob("part-*.parquet")) + list(
        run_dir.glob("episodes.parquet")
    )
    assert on_disk == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["n"] == 0, summary
    assert "File too large" in summary["error"] or "disk" in summary["error"], summary["error"]


def test_a_seed_past_the_int64_run_seed_column_is_refused(tmp_path):
    result = run_cli(["seed=9223372036854775808", "episodes=3"], tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.proc.stderr
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith("rlrec: error: seed: must be at most 2**63-1") and "Fix: " in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "n" not in summary  # no episode claimed
    assert run_cli(["seed=9223372036854775807", "episodes=2"], tmp_path / "max").code == 0


def _strict(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in summary.json: not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
@pytest.mark.parametrize("only", [None, "inf", "nan"])
def test_nan_and_infinite_returns_give_strict_json_and_drawable_pages(tmp_path, only):
    wrapper = "{_target_: tests.envs.NonFiniteRewards" + (f", only: {only}}}" if only else "}")
    result = run_cli(
        [f"env.wrappers=[{wrapper}]", "episodes=12", "trigger=never"], tmp_path / "run"
    )
    assert result.code == 0, result.proc.stderr[-2000:]
    summary = _strict((tmp_path / "run" / "summary.json").read_text())
    returns = pd.read_parquet(tmp_path / "run" / "episodes.parquet")["return"].to_numpy()
    finite = returns[np.isfinite(returns)]
    assert summary["n"] == 12 and summary["n_nonfinite"] == 12 - len(finite) > 0
    if len(finite):
        assert summary["mean"] == pytest.approx(finite.mean())
        assert summary["std"] == pytest.approx(finite.std(ddof=1))
        assert (summary["min"], summary["max"]) == (finite.min(), finite.max())
    else:
        assert summary["mean"] is None and summary["min"] is None and summary["max"] is None
    assert "NaN or infinite" in result.proc.stdout
    page = (tmp_path / "run" / "report.html").read_text()
    for svg in page.split("<svg")[1:]:
        assert "nan" not in svg.split("</svg>")[0].lower()


def killed_with_parts(run_dir: Path, parts: int) -> None:
    """A long stats run in ``run_dir``, SIGKILLed once ``parts`` parts of it are on disk."""
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=never", "episodes=200000"]
    cmd += ["sinks.parquet.flush_seconds=0.05", "memory_every_s=0", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list((run_dir / "episodes").glob("part-*.parquet"))) < parts:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_every_reader_reads_a_killed_runs_parts(tmp_path):
    run_dir = tmp_path / "run"
    killed_with_parts(run_dir, 3)
    returns = pd.read_parquet(run_dir / "episodes")["return"].to_numpy()  # what is on disk
    summarized = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(run_dir)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert summarized.returncode == 1, summarized.stderr  # not complete
    assert f"status killed, {len(returns)} episodes: mean return {returns.mean():.2f}" in (
        summarized.stdout
    )
    reported = subprocess.run(
        [console_script("rlrec-report"), str(run_dir)], capture_output=True, text=True
    )
    assert reported.returncode == 0, reported.stderr
    page = (run_dir / "report.html").read_text()
    assert "n/a</b>mean return" not in page
    assert f"<b>{returns.mean():.2f}</b>mean return" in page and "<b>killed</b>" in page


@pytest.mark.slow
@pytest.mark.alone  # a run of another test beside it may remove the orphaned ring before it looks
def test_a_ring_left_by_a_killed_process_group_goes_with_the_next_run(tmp_path):
    import os
    import signal

    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm: rings live in the temporary folder")
    cmd = [sys.executable, str(ROOT / "run.py"), "trigger=every", "episodes=100000"]
    proc = subprocess.Popen(
        [*cmd, f"hydra.run.dir={tmp_path / 'killed'}"], cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not set(shm.glob(f"rlrec-frames-{proc.pid}-*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    (left,) = shm.glob(f"rlrec-frames-{proc.pid}-*")
    os.killpg(proc.pid, signal.SIGKILL)  # rlrec and its encoder at once: nobody removes it
    proc.wait()
    time.sleep(0.5)
    assert left.exists()
    unknown = shm / "rlrec-frames-someone-else"  # no owner in its name: not ours to remove
    unknown.write_bytes(b"")
    try:
        assert run_cli(["trigger=every", "episodes=1"], tmp_path / "next").code == 0
        assert not left.exists() and unknown.exists()  # (other tests' live rings stay too)
    finally:
        unknown.unlink(missing_ok=True)


@pytest.mark.slow
def test_io_errors_name_the_file_and_the_cause_not_a_full_disk(tmp_path):
    run_dir = tmp_path / "run"
    killed_with_parts(run_dir, 2)
    damaged = sorted((run_dir / "episodes").glob("part-*.parquet"))[0]
    data = bytearray(damaged.read_bytes())
    data[8:-8] = bytes(len(data) - 16)  # the footer holds, the pages do not
    damaged.write_bytes(bytes(data))
    result = run_cli([f"resume={run_dir}"], run_dir)
    assert result.code == 1 and "Traceback" not in result.proc.stderr, result.proc.stderr
    (line,) = [x for x in result.proc.stderr.splitlines() if x.startswith("rlrec: error:")]
    assert f"cannot read {damaged}" in line and "move that file away and resume" in line
    assert "free some space" not in line


def test_a_constructor_that_raises_is_named_with_what_it_raised(tmp_path):
    args = ["policy=custom", "policy._target_=fractions.Fraction", "+policy.numerator=abc"]
    result = run_cli([*args, "episodes=1"], tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.proc.stderr
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith("rlrec: error: policy: fractions.Fraction could not be built")
    assert "it raised TypeError: " in line, line


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: a disk that fills up within seconds of filming (mounting one needs root,
    as in CI)."""
    from tests.system import require

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        require("a tmpfs mount", "run as root (a file-size limit is tested without it)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_ends_with_one_line_and_a_failed_summary(small_disk):
    run_dir = small_disk / "run"
    result = run_cli(["trigger=every", "episodes=2000"], run_dir)
    assert result.code == 1, result.proc.stderr[-2000:]
    (line,) = result.proc.stderr.strip().splitlines()  # no logging error, no traceback
    assert line.startswith("rlrec: error: ") and "No space left on device" in line, line
    assert "free some space" in line and "Traceback" not in result.proc.stdout
    summary = _strict((run_dir / "summary.json").read_text())  # the room kept for it
    on_disk = pd.read_parquet(run_dir / "episodes")  # the parts that made it
    assert summary["status"] == "failed" and summary["n"] == len(on_disk) > 0
    assert "No space left" in summary["error"]
    assert not (run_dir / ".summary-room").exists()
    # a film the disk cut short is dropped whole (FFmpeg may crash closing it: named first)
    assert not [p.name for p in run_dir.rglob("*partial*")]


def test_a_full_disk_while_tensorboard_makes_its_gifs_names_the_disk(small_disk):
    # the TensorBoard sink makes a GIF of each film with the encoder: its wait used to end after
    # 300 s as "still logging", hiding the full disk (retry_s=0: given up on at its first failure)
    run_dir = small_disk / "run"
    args = ["trigger=every", "episodes=2000", "sinks=[parquet,tensorboard]"]
    result = run_cli([*args, "sinks.tensorboard.retry_s=0"], run_dir)
    assert result.code == 1, result.proc.stderr[-2000:]
    (line,) = result.proc.stderr.strip().splitlines()
    assert line.startswith("rlrec: error: ") and "No space left on device" in line, line
    assert "still logging" not in result.proc.stdout + result.proc.stderr
    summary = _strict((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    failure = summary["tracker_failures"].get("tensorboard")  # if the GIFs met the full disk
    assert failure is None or "No space left" in failure["error"], failure
    assert not [p.name for p in run_dir.rglob("*partial*")]  # no half-made GIF either


def test_the_summary_goes_in_its_room_while_another_writer_fills_the_disk(small_disk):
    # the encoder may still be filming when the run writes its summary on a full disk: freeing the
    # room before writing would hand the space to that writer, and the summary would be lost
    from rlrec.rundir import RunDir

    run = RunDir(small_disk / "run")
    run.path.mkdir()
    run.keep_room_for_summary()
    filler = small_disk / "film.mp4"
    writer = subprocess.Popen(
        [sys.executable, "-c", _FILLER, str(filler)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "full"  # it keeps trying, as an encoder does
        run.write_summary({"status": "failed", "n": 7, "error": "OSError: no space"})
    finally:
        writer.kill()
        writer.wait()
    assert json.loads(run.summary_file.read_text())["n"] == 7
    assert not run.summary_room.exists()


_FILLER = """
import sys
with open(sys.argv[1], "wb", buffering=0) as film:
    told = False
    while True:
        try:
            film.write(bytes(4096))
        except OSError:
            if not told:
                print("full", flush=True)
                told = True
"""


def test_a_run_that_could_not_write_its_summary_is_counted_from_its_parts(tmp_path):
    # the run's own summary can be lost to a disk that stays full; the failure's summary then
    # counts the episodes its parts hold, never fewer or more
    from rlrec.cli import _failed_summary
    from rlrec.rundir import RunDir

    run = tmp_path / "run"
    assert run_cli(["episodes=5", "trigger=never", "sinks=[parquet]"], run).code == 0
    (run / "summary.json").unlink()
    _failed_summary(run, "OSError: [Errno 28] No space left on device")
    summary = _strict((run / "summary.json").read_text())
    rows = RunDir(run).read_episodes()
    assert summary["status"] == "failed" and summary["n"] == len(rows) == 5
    assert summary["mean"] == pytest.approx(np.mean(rows["return"].to_numpy()))
