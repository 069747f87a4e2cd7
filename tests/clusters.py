"""Real clusters on this machine for the launcher tests: a Ray head node and a single-node SLURM,
each on 127.0.0.1 only, started by a fixture and stopped after it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.system import require, require_module

#: Ray on one machine, on the loopback address (Ray's switch for it, read by every Ray process).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_home(folder: Path) -> Path:
    """A home folder as Ray's defaults leave a user's after any local ``ray.init()``: holding
    ``~/.ray/auth_token`` (made here with Ray's own command), so that ``ray start --head`` turns
    token authentication on unless ``RAY_AUTH_MODE`` says otherwise."""
    home = folder / "home"
    home.mkdir(exist_ok=True)
    cli = Path(sys.executable).parent / "ray"
    env = {**os.environ, **RAY_ENV, "HOME": str(home)}
    env.pop("RAY_AUTH_MODE", None)
    subprocess.run(
        [str(cli), "get-auth-token", "--generate"], env=env, check=True, capture_output=True
    )
    assert (home / ".ray" / "auth_token").is_file()
    return home


SLURM_INSTALL = "apt-get install -y slurm-wlm munge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, proc: subprocess.Popen | None, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not ready():
        alive = proc is None or proc.poll() is None
        assert alive, f"{what} exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not start: {log.read_text()[-3000:]}"
        time.sleep(0.25)


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class RayCluster:
    """``ray start --head --block`` with two CPUs and its dashboard (the state API the tests ask
    which tasks ran), in a temporary folder of its own; stopping the command stops the cluster.
    Started as a user starts one: a token in the home folder and ``RAY_AUTH_MODE`` unset, so
    token authentication is on (``auth=False``: ``RAY_AUTH_MODE=disabled`` on the head only)."""

    def __init__(self, folder: Path, auth: bool = True) -> None:
        require_module("ray", 'pip install -e ".[ray]"')
        self.home = ray_home(folder)
        #: What every process of this user runs with: the home folder, Ray's mode unset.
        self.user_env = RAY_ENV | {"HOME": str(self.home), "RAY_AUTH_MODE": None}
        head_env = {**os.environ, **RAY_ENV, "HOME": str(self.home)}
        head_env.pop("RAY_AUTH_MODE", None)
        if not auth:
            head_env["RAY_AUTH_MODE"] = "disabled"
        self.port, self.dashboard = free_port(), free_port()
        # Ray's sockets live under its temporary folder: a short path, or they exceed 107 bytes
        self.temp = tempfile.mkdtemp(prefix="rlrec-ray-")
        self.log_path = folder / "ray.log"
        self.log = self.log_path.open("w")
        cli = Path(sys.executable).parent / "ray"
        cmd = [str(cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1"]
        cmd += [f"--port={self.port}", "--num-cpus=2", "--disable-usage-stats"]
        cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        cmd += [f"--dashboard-port={self.dashboard}", f"--temp-dir={self.temp}"]
        self.proc = subprocess.Popen(
            cmd,
            env=head_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._ready, "the Ray head node", self.proc, self.log_path)
        except BaseException:
            self.stop()  # nothing of a cluster that did not start is left running
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str | None]:
        """What a sweep connecting to this cluster runs with (Ray's own convention)."""
        return self.user_env | {"RAY_ADDRESS": self.address}

    def _ready(self) -> bool:
        token = (self.home / ".ray" / "auth_token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.dashboard}/api/version",
            headers={"authorization": f"Bearer {token}"},  # ignored where authentication is off
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def sweep_tasks(self, sweep_dir: Path) -> list[str]:
        """The states of the job tasks of the sweep written to ``sweep_dir``, as the cluster
        recorded them (its driver is found by its command line). Asked by a process of this
        cluster's user with token authentication on, as its dashboard wants."""
        code = f"""
import json
from ray.util.state import list_jobs, list_tasks
api = "http://127.0.0.1:{self.dashboard}"
entrypoints = {{j.job_id: j.entrypoint for j in list_jobs(address=api)}}
drivers = [job for job, entrypoint in entrypoints.items() if {str(sweep_dir)!r} in entrypoint]
assert len(drivers) == 1, entrypoints
filters = [("job_id", "=", drivers[0]), ("name", "=", "run_sweep_job")]
tasks = list_tasks(address=api, filters=filters, raise_on_missing_output=False)
print(json.dumps([t.state for t in tasks]))
"""
        env = {**os.environ, **RAY_ENV, "HOME": str(self.home), "RAY_AUTH_MODE": "token"}
        asked = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert asked.returncode == 0, asked.stderr[-3000:]
        return json.loads(asked.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        # the cluster is thrown away: half a minute of Ray's clean shutdown buys nothing here
        stop(self.proc, timeout=5)
        self.log.close()
        # anything of this cluster still running (found by its folder) goes too
        subprocess.run(["pkill", "-9", "-f", self.temp], check=False)
        shutil.rmtree(self.temp, ignore_errors=True)


class Slurm:
    """A single-node SLURM on 127.0.0.1: ``slurmctld`` and ``slurmd`` in the foreground with a
    ``slurm.conf`` of their own (free ports, state and logs in ``folder``), authenticated by
    ``munged`` (started here unless one runs). Clients find it through ``SLURM_CONF``."""

    def __init__(self, folder: Path) -> None:
        for program in ("munged", "slurmctld", "slurmd", "sbatch", "runuser"):
            if shutil.which(program) is None:
                require(f"SLURM ({program})", SLURM_INSTALL)
        if os.geteuid() != 0:
            require("root, which SLURM's daemons run as here", "run the tests as root (CI does)")
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        self.log_path = folder / "daemons.log"
        self.log = self.log_path.open("w")
        self._start_munge()
        self.conf.write_text(self._config())
        self._start(["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._start(["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        wait_until(self._idle, "SLURM", None, self.log_path)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _start_munge(self) -> None:
        socket_path = Path("/run/munge/munge.socket.2")
        if (
            socket_path.exists()
            and subprocess.run(["munge", "-n"], capture_output=True).returncode == 0
        ):
            return  # a munged runs already (the system's)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(socket_path.parent, "munge", "munge")
        self._start(["runuser", "-u", "munge", "--", "munged", "--foreground", "--force"])
        wait_until(socket_path.exists, "munged", self.procs[-1], self.log_path)

    def _config(self) -> str:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        f = self.folder
        return "\n".join(
            [
                "ClusterName=rlrec-test",
                "SlurmctldHost=localhost(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                # bind to the node's address (127.0.0.1), not to every address of the machine
                "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MpiDefault=none",
                f"StateSaveLocation={f / 'state'}",
                f"SlurmdSpoolDir={f / 'spool'}",
                f"SlurmctldPidFile={f / 'slurmctld.pid'}",
                f"SlurmdPidFile={f / 'slurmd.pid'}",
                f"SlurmctldLogFile={f / 'slurmctld.log'}",
                f"SlurmdLogFile={f / 'slurmd.log'}",
                f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
                f"RealMemory={memory_mb // 2} State=UNKNOWN",
                "PartitionName=rlrec Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def _start(self, cmd: list[str]) -> None:
        self.procs.append(
            subprocess.Popen(
                cmd,
                env=os.environ | self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def _idle(self) -> bool:
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=os.environ | self.env
        )
        return state.stdout.strip() == "idle"

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user=root"], env=os.environ | self.env, check=False)
        for proc in reversed(self.procs):
            # the cluster is thrown away: its daemons need not save their state (slurmctld
            # spends half a minute on a clean shutdown)
            stop(proc, timeout=3)
        self.log.close()
