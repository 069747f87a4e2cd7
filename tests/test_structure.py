"""The layout the README's Development section describes, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

from rlrec.rundir import HYDRA_DIR, RunDir, SweepDir

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlrec"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The rlrec modules ``path`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_no_import_cycle_inside_the_package():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package imports its __init__ first: a module's import of rlrec.x.y also runs rlrec.x.
    for name in list(graph):
        for dep in list(graph[name]):
            parent = dep.rpartition(".")[0]
            if parent in modules and parent != "rlrec" and not name.startswith(parent + "."):
                graph[name].add(parent)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if dep in ("rlrec", node):
                continue
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_no_class_is_over_250_lines():
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 250, f"{path.name}: class {node.name} has {lines} lines"


def test_run_directory_file_names_live_in_one_module():
    """Only rlrec/rundir.py types a file name of a run or a sweep, in rlrec/ and scripts/."""
    names = {
        value
        for owner in (RunDir, SweepDir)
        for key, value in vars(owner).items()
        if key.isupper() and isinstance(value, str)
    }
    names |= {HYDRA_DIR, "overrides.yaml", "hydra.yaml", "timelapse.mp4"}
    # plain words (and an extra's name), not file names
    names -= {"videos", "episodes", "replay", "timelapse", "tensorboard"}
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text())
        prose = _prose(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in prose
            ):
                for name in names:
                    if name == node.value or f"/{name}" in node.value or f"{name}/" in node.value:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name!r}")
    assert not offenders, "file names typed outside rlrec/rundir.py:\n" + "\n".join(offenders)


def _prose(tree: ast.Module) -> set[int]:
    """The ids of the string constants that are prose, not code: docstrings, and the words of a
    ``ConfigError`` (``policy.checkpoint`` is also the name of a config key)."""
    found = set()
    for parent in ast.walk(tree):
        body = getattr(parent, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
        if isinstance(parent, ast.Call) and ast.unparse(parent.func).endswith("ConfigError"):
            found |= {id(n) for n in ast.walk(parent)}
    return found


def test_every_shipped_key_is_known_to_the_key_check():
    """The key check derives rlrec's own keys from the shipped YAML: every preset's keys pass."""
    from hydra import compose, initialize_config_dir

    from rlrec.config import CONF_DIR, check_keys

    for preset in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            check_keys(compose("config", overrides=[f"experiment={preset.stem}"]))


def test_no_shipped_config_sets_hydra_mode():
    """``rlrec.hydra_callbacks.compose_once`` lets Hydra skip the composition it makes only to
    read ``hydra.mode``: that holds while no config of rlrec's sets it."""
    import yaml

    for path in (PACKAGE / "conf").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text()) or {}
        assert "mode" not in (data.get("hydra") or {}), f"{path} sets hydra.mode"


def test_every_module_and_entry_point_has_a_smoke_test():
    """``pytest -m smoke`` imports every module and runs ``run.py`` and every console script: a
    module or a script added later joins the lane or this test fails."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
        import tomli as tomllib

    from tests import test_smoke

    assert test_smoke.pytestmark.name == "smoke"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(test_smoke.ENTRY_POINTS) == {"run.py", *scripts}
    assert all(t.__module__ == test_smoke.__name__ for t in test_smoke.ENTRY_POINTS.values())
    plugins = ROOT / "hydra_plugins" / "rlrec_launchers"
    modules = {
        *_modules(),
        *(f"hydra_plugins.rlrec_launchers.{p.stem}" for p in plugins.glob("*.py")),
    }
    modules = {m.removesuffix(".__init__") for m in modules}
    assert modules == set(test_smoke.package_modules())
