"""The README's and the site's examples stay true: their commands compose and pass every check,
their code runs."""

from __future__ import annotations

import re
import shlex
import textwrap

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlrec.config import validate
from tests.conftest import CONF_DIR, ROOT

#: The README and every page of the site: their examples are one set.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README = "\n".join(page.read_text() for page in PAGES)


def _run_commands() -> list[str]:
    """Every single-run ``python run.py ...`` example (sweeps and placeholders aside)."""
    found = []
    for line in README.splitlines():
        command = line.strip().split("  #")[0].strip()
        if not command.startswith("python run.py") or " -m " in f"{command} ":
            continue
        if "<" in command or "outputs/" in command or "--" in command:
            continue  # a placeholder, another run's folder, or Hydra's own flags
        found.append(command)
    return found


@pytest.mark.parametrize("command", _run_commands())
def test_every_readme_command_composes_and_passes_the_checks(command):
    overrides = shlex.split(command)[2:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    validate(cfg)


def _launcher_commands() -> list[str]:
    """Every ``python run.py -m hydra/launcher=...`` example, without its sweep values."""
    found = []
    for line in README.splitlines():
        command = line.strip().split("  #")[0].strip()
        command = re.sub(r"^[A-Z_]+=\S+ ", "", command)  # an environment variable before it
        if command.startswith("python run.py -m ") and "hydra/launcher=" in command:
            found.append(command)
    return found


@pytest.mark.parametrize("command", _launcher_commands())
def test_every_readme_launcher_command_composes_with_its_launcher(command):
    """The launcher examples compose as written (sweep values aside) and name a launcher class
    that Hydra can find."""
    from hydra.core.plugins import Plugins

    from rlrec.hydra_callbacks import register_plugins

    swept = re.compile(r",|range\(|^'?seed=")
    overrides = [o for o in shlex.split(command)[3:] if not swept.search(o)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
    register_plugins()
    assert cfg.hydra.launcher._target_ in Plugins.instance().class_name_to_class


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)  # indented ones too


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("agents.py", "class MyPolicy"),
        ("agents.py", "class MyBatchPolicy"),
        ("triggers.py", "class EveryThird"),
        ("sinks.py", "class JsonLines"),
    ],
)
def test_the_readme_shows_the_shipped_examples_as_they_are(module, name):
    """Every line the README shows of the class is in the shipped file, in the same order."""
    shipped = (ROOT / "mypackage" / module).read_text().splitlines()
    block = textwrap.dedent(next(b for b in _python_blocks() if name in b))
    shown = [line for line in block[block.index(name) :].splitlines() if line.strip()]
    position = 0
    for line in shown:
        assert line in shipped[position:], f"README shows {line!r}, not in mypackage/{module}"
        position = shipped.index(line, position) + 1


def test_the_readme_seed_example_runs():
    block = next(b for b in _python_blocks() if "def ss(*k)" in b)
    exec(compile(block, "README.md", "exec"), {})


@pytest.mark.parametrize(
    "marker",
    ["from rlrec.wrappers import RecordEpisodeStatistics", "from rlrec.wrappers import Recorder"],
)
def test_the_readme_wrapper_examples_run(tmp_path, monkeypatch, marker):
    block = next(b for b in _python_blocks() if marker in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    videos = sorted(p.name for p in tmp_path.glob("**/*.mp4"))
    assert videos == [f"eval-episode-{e}.mp4" for e in range(4)]


def test_the_readme_vector_recorder_example_runs(tmp_path, monkeypatch):
    block = next(b for b in _python_blocks() if "from rlrec.wrappers.vector import Recorder" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "outputs/my-vector-run/episodes.parquet").to_pylist()
    assert len(rows) >= 20 and {r["env_index"] for r in rows} == {0, 1, 2, 3}
    filmed = [r["episode"] for r in rows if r["video"]]
    assert filmed and filmed == [
        r["episode"] for r in rows if r["env_index"] == 0 and r["episode"] % 10 == 0
    ]


def _pages_blocks() -> list[tuple[str, list[str]]]:
    """Each page's Python blocks, in order; a block right after ``<!-- not run: reason -->``
    is left out (the reason says why)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = [
            m[2]
            for m in re.finditer(r"(<!-- not run: [^>]+ -->\n)?```python\n(.*?)```", text, re.S)
            if not m[1]
        ]
        if blocks:
            found.append((page.relative_to(ROOT).as_posix(), blocks))
    return found


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder as the examples assume it: the run and the sweep they read."""
    from tests.conftest import run_cli

    folder = tmp_path_factory.mktemp("user")
    run = folder / "outputs" / "2026-11-28" / "03-43-09"
    assert run_cli(["episodes=4", "memory_every_s=0.01"], run).code == 0
    sweep = folder / "outputs" / "multirun" / "2026-11-28" / "10-00-00"
    args = ["trigger=periodic", "trigger.period=5,10", "seed=0,1", "episodes=3"]
    assert run_cli(args, sweep, multirun=True).code == 0
    return folder, run


@pytest.mark.slow
@pytest.mark.parametrize(("page", "blocks"), _pages_blocks(), ids=lambda v: str(v)[:40])
def test_every_python_block_of_the_pages_runs(page, blocks, user_folder, tmp_path, monkeypatch):
    """Each page's blocks run in order in one namespace, in a folder of their own that holds the
    run and the sweep they read (``run`` names that run, as the pages say); a fragment of a
    shipped example finds the rest of it (``mypackage``) defined."""
    import importlib

    folder, run = user_folder
    (tmp_path / "outputs").mkdir()
    for name in ("2026-11-28", "multirun"):
        (tmp_path / "outputs" / name).symlink_to(folder / "outputs" / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    namespace = {"run": str(run.relative_to(folder)), "__name__": "__docs__"}
    namespace |= {k: v for k, v in vars(importlib.import_module("mypackage.agents")).items()
                  if not k.startswith("_")}  # fmt: skip
    for block in blocks:
        exec(compile(textwrap.dedent(block), page, "exec"), namespace)
