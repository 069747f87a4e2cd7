"""rlrec: record reinforcement-learning agents from a Hydra config.

From Python (a notebook, a script)::

    import rlrec
    result = rlrec.run(["trigger=never", "episodes=20"])
    result.episodes.to_pandas()   # one row per episode
    result.run_dir                # where the videos, Parquet and summary.json are
"""


def __getattr__(name: str) -> str:
    # looked up on first use: importlib.metadata costs an import 15 ms (the wrappers' budget)
    if name != "__version__":
        raise AttributeError(f"module 'rlrec' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlrec")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def run(*args, **kwargs):
    """Run one config with overrides; see :func:`rlrec.api.run`."""
    from rlrec.api import run as _run  # imported lazily: `import rlrec` stays cheap

    return _run(*args, **kwargs)


__all__ = ["__version__", "run"]
