"""Collection of the package's doctests (``pytest`` runs them with ``--doctest-modules``).

A module that needs an optional extra (a tracker, an env family) is left out of the collection
when that extra is not installed, so that the README's ``pytest`` works on a bare install too;
under ``RLREC_REQUIRE_ALL=1`` (CI, where ``[test]`` installs every extra) it is collected, and a
missing extra fails.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: object) -> bool | None:
    path = Path(collection_path)
    if path.suffix != ".py" or ROOT / "rlrec" not in path.parents:
        return None
    if os.environ.get("RLREC_REQUIRE_ALL") == "1":
        return None
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and not err.name.startswith("rlrec"):
            return True  # an optional extra that is not installed here
        raise
    return None
