"""``hydra/launcher=ray``: a sweep's jobs as tasks on a Ray cluster.

A thin launcher over Ray's task API rather than Hydra's ``hydra-ray-launcher``: that plugin (1.2.2)
pins ``cloudpickle<3``, which the ``joblib`` that Hydra's joblib launcher needs cannot share an
environment with, and its default ``ray.init`` arguments are refused by a running cluster. Here a
job is one task (one CPU unless ``hydra.launcher.remote`` says otherwise) that composes its own
config on the node that runs it and writes its run directory where the config says.
"""

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

INSTALL = 'pip install "rlrec[ray]"'


class RayLauncher(Launcher):
    """Runs each job as a Ray task on the cluster at ``address`` (else ``$RAY_ADDRESS``, else a
    local cluster started for the sweep, on 127.0.0.1, with ``num_cpus`` CPUs)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        remote: Any = None,
        init: Any = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.remote = _plain(remote)
        self.init = _plain(init)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        if not self._address():
            # A cluster of this machine alone: Ray's switch that keeps all its processes on the
            # loopback address (read when Ray is imported), so that none listens on the network.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        self._connect(_import_ray())  # before the sweep writes anything: a mistake is one line

    def _key(self) -> str:
        """Where the address came from, as the user set it."""
        return "hydra.launcher.address" if self.address else "RAY_ADDRESS"

    def _address(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        from rlrec.jobs import record_lost_job, run_sweep_job

        ray = _import_ray()
        assert self.config is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        shared = ray.put(
            (
                self.hydra_context,
                self.config,
                self.task_function,
                Singleton.get_state(),
                os.getcwd(),
            )
        )
        task = ray.remote(run_sweep_job).options(**self.remote)
        log.info("Ray is running %d jobs; sweep output dir: %s", len(job_overrides), sweep_dir)
        jobs = []
        for num, overrides in enumerate(job_overrides, initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            jobs.append((num, list(overrides), task.remote(shared, num, list(overrides))))
        returns = []
        try:
            for num, overrides, ref in jobs:
                try:
                    returns.append(ray.get(ref))
                except ray.exceptions.RayError as err:  # its worker died, its node was lost, ...
                    cause = getattr(err, "cause", None) or err  # a task's own exception
                    lines = str(cause).strip().splitlines() or [""]
                    error = f"{type(cause).__name__}: {lines[0]}"
                    returns.append(record_lost_job(sweep_dir, num, overrides, error))
        except KeyboardInterrupt:  # Ctrl-C: the jobs end as interrupted, where they run
            _cancel(ray, [ref for _, _, ref in jobs])
            raise
        return returns

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        address = self._address()
        try:
            if address:
                _check_reachable(address)
                _use_token_if_any()
                _check_admitted(address)
                ray.init(address=address, **self.init)
            else:  # this machine alone: nothing outside it needs to reach the cluster
                local = {"num_cpus": self.num_cpus, "include_dashboard": False}
                ray.init(address="local", **local | self.init)
        except NotAdmitted as err:
            _fail(
                f"{self._key()}: the Ray cluster at {address} has token authentication on and "
                f"refused this client ({err}). Fix: put the cluster's token (ray get-auth-token "
                "on its head node) in ~/.ray/auth_token or RAY_AUTH_TOKEN, and leave "
                "RAY_AUTH_MODE unset (or token)"
            )
        except (OSError, ValueError, RuntimeError) as err:
            key = self._key()
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            _fail(
                f"{key}: cannot start or reach {where} ({err}). Fix: start it "
                "(ray start --head), or point hydra.launcher.address (or RAY_ADDRESS) at a "
                "running one, or leave both unset for a local cluster"
            )


def _cancel(ray: Any, refs: list[Any], grace_s: float = 30.0) -> None:
    """Stop the sweep's tasks: one not started never starts; a running one gets Ray's
    ``KeyboardInterrupt``, which ends its run as ``interrupted`` (its episodes and summary written),
    and is waited for (``grace_s`` at most)."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=grace_s)


def _check_reachable(address: str) -> None:
    """Fail at once on an address nothing listens at (Ray itself retries for a minute)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        with socket.create_connection((host, int(port)), timeout=10):
            pass


def _use_token_if_any() -> None:
    """Send the token Ray keeps for this user, if there is one and ``RAY_AUTH_MODE`` is unset.

    Since Ray 2.5x the first local ``ray.init()`` writes ``~/.ray/auth_token``, and from then on
    ``ray start --head`` turns token authentication on. A client given an explicit address (as
    here) does not look for the token itself; without it the cluster refuses the client, which
    Ray reports after a minute of retries as "Failed to connect". A token sent to a cluster whose
    authentication is off is ignored."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return  # the user's choice
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return  # a Ray without token authentication
    if AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        os.environ["RAY_AUTH_MODE"] = "token"  # this process and the tasks it starts
        Config.initialize("")  # Ray reads its settings once: read them again


def _check_admitted(address: str) -> None:
    """Fail at once, with the cluster's own reason, where it refuses this client's
    authentication (``ray.init`` would retry for a minute and then say only that it failed)."""
    if address.startswith("ray://"):
        return  # Ray Client: a server of its own
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    try:
        with _stderr_silenced():  # Ray's C++ side logs the refusal too, as a warning
            GcsClient(address=address)
    except AuthenticationError as err:
        raise NotAdmitted(" ".join(str(err).split()).split(". ")[0]) from None


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (what C++ code writes there included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class NotAdmitted(RuntimeError):
    """The cluster's token authentication refused this client (Ray's reason)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        _fail(f"hydra/launcher=ray: Ray is not installed. Fix: {INSTALL}")
    return ray


def _fail(message: str) -> None:
    """A mistake in the launcher's config: one line, exit 2, as for every rlrec key."""
    print(f"rlrec: error: {message}", file=sys.stderr)
    sys.exit(2)


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
