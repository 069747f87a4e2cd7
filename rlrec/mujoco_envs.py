"""MuJoCo envs filmed: an OpenGL backend without a display, the log in the run directory, and a
camera that starts each episode afresh.

MuJoCo renders through the backend ``MUJOCO_GL`` names (``egl``, ``osmesa``, or ``glfw``, which
needs a display), read once when ``mujoco`` is imported; left unset on a headless machine,
Gymnasium's MuJoCo envs die at their first frame. So before such an env is built to be filmed,
rlrec tries the headless backends in order, each in a short child process (a failed backend
cannot be unloaded from a process, and some abort it), and sets ``MUJOCO_GL`` to the first that
renders, which the env's own process, vector sub-environments and worker processes then inherit.
A backend the user set is checked the same way, so a wrong one ends the run before its first
episode with what to install, not mid-episode with a traceback.

Gymnasium's MuJoCo renderer aims its free camera where the bodies are when it draws its first
frame, and keeps that aim for the env's life: an episode's film would depend on which episode
was filmed first. ``FreshCamera`` aims it again at every reset, so a film is a function of its
episode alone, and a replay, another worker or another vector sub-environment films it the same.
(Closing the renderer instead leaves it drawing black frames: Gymnasium issue 455.)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlrec.errors import ConfigError

#: Tried in this order where ``MUJOCO_GL`` is unset and there is no display: EGL uses a GPU when
#: there is one and Mesa's software renderer otherwise; OSMesa is software only.
HEADLESS_BACKENDS = ("egl", "osmesa")
#: The backends Gymnasium's MuJoCo renderer accepts.
GYMNASIUM_BACKENDS = ("egl", "osmesa", "glfw")
#: Debian's packages each backend needs (the names users search for on other systems too).
SYSTEM_PACKAGES = {
    "egl": "libegl1 libgl1-mesa-dri",
    "osmesa": "libosmesa6",
    "glfw": "libglfw3 and a display",
}
#: Packages whose envs simulate with MuJoCo, beside Gymnasium's own ``gymnasium.envs.mujoco``.
MUJOCO_PACKAGES = ("gymnasium_robotics", "dm_control", "shimmy", "metaworld", "mo_gymnasium")
#: Set once a backend is known to work, so child processes do not check it again.
_CHECKED = "RLREC_MUJOCO_GL_CHECKED"
#: Renders one frame of a lit sphere and refuses an all-black one.
_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 2'/><geom size='.2' rgba='1 1 1 1'/></worldbody></mujoco>")
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 32, 32)
renderer.update_scene(data)
pixels = renderer.render()
renderer.close()
assert pixels.any(), "it rendered a black frame"
"""


def uses_mujoco(env_id: str) -> bool:
    """Whether the registered ``env_id`` simulates with MuJoCo (by its entry point's module)."""
    entry = gym.spec(env_id).entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return "mujoco" in module or module.split(".")[0] in MUJOCO_PACKAGES


def prepare_gl(env_id: str, backends: Iterable[str] = HEADLESS_BACKENDS) -> None:
    """Make sure MuJoCo can render ``env_id``'s frames in this process and its children: check
    the user's ``MUJOCO_GL``, or choose the first of ``backends`` that works when there is no
    display. Raises ``ConfigError`` (key ``MUJOCO_GL``) when none does."""
    if not sys.platform.startswith("linux") or not uses_mujoco(env_id):
        return  # macOS and Windows have a native context (CGL, WGL)
    _prepare(env_id, backends)


def _prepare(env_id: str | None, backends: Iterable[str]) -> None:
    """``prepare_gl`` for a MuJoCo env (``env_id``: its registered id, if it has one)."""
    if importlib.util.find_spec("mujoco") is None:
        return  # building the env says which extra to install
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's INFO notes are noise
    chosen = os.environ.get("MUJOCO_GL")
    if chosen is not None and os.environ.get(_CHECKED) == chosen:
        return
    if chosen:
        _check_user_backend(env_id, chosen)
    elif os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return  # Gymnasium's own choice (GLFW) works with a display
    else:
        chosen = _first_working(list(backends))
        os.environ["MUJOCO_GL"] = chosen
    os.environ[_CHECKED] = chosen


#: ``env.kwargs`` that choose a MuJoCo env's camera: where the user passes one, it stands.
CAMERA_KWARGS = ("camera_id", "camera_name", "default_camera_config")
#: The camera Gymnasium's v5 locomotion models (HalfCheetah, Hopper, Ant, Walker2d, Humanoid,
#: Swimmer, ...) carry that follows the agent (``mode="trackcom"``).
TRACKING_CAMERA = "track"


def follow_agent(env: gym.Env) -> bool:
    """Film ``env`` through its model's ``track`` camera, if it has one and renders with the
    free camera; return whether it does now.

    Gymnasium 1.x finds that camera when none is named, then renders with its free camera
    instead (for ``default_camera_config`` to apply): a camera that stays where the episode
    began, which a running agent leaves within a hundred steps."""
    import mujoco

    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    model = getattr(env.unwrapped, "model", None)
    if renderer is None or model is None or getattr(renderer, "camera_id", None) != -1:
        return False
    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, TRACKING_CAMERA)
    if camera < 0:
        return False
    renderer.camera_id = camera
    return True


def prepare_gl_for(env: Any) -> None:
    """``prepare_gl`` for an env already built (a drop-in wrapper's): Gymnasium's MuJoCo renderer
    picks its OpenGL backend at its first frame, so choosing it now is in time. An async vector
    env's processes started with the environment they had: without a backend there, say how to
    give them one."""
    if not sys.platform.startswith("linux"):
        return
    spec = getattr(env, "spec", None)
    env_id = spec.id if spec is not None and spec.id in gym.registry else None
    sub_envs = getattr(env.unwrapped, "envs", None)
    if isinstance(env, gym.vector.VectorEnv) and sub_envs is None:
        headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if env_id and uses_mujoco(env_id) and headless and not os.environ.get("MUJOCO_GL"):
            raise ConfigError(
                "MUJOCO_GL",
                "is unset and there is no display, so this async vector env's processes "
                "cannot render MuJoCo frames",
                "set MUJOCO_GL=egl (or osmesa) before gymnasium.make_vec",
            )
        return
    inner = sub_envs[0] if sub_envs else env
    if hasattr(inner.unwrapped, "mujoco_renderer"):
        _prepare(env_id, HEADLESS_BACKENDS)


class FreshCamera(gym.Wrapper):
    """Aim a MuJoCo env's camera at every reset as a new renderer would aim it."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        aim_camera(self.env)
        return result


def aim_camera(env: gym.Env) -> None:
    """Aim the camera of a (just reset) Gymnasium MuJoCo env's renderer at the bodies where they
    are, then apply the env's default camera settings, as its first frame did."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    viewers = getattr(renderer, "_viewers", None)
    if not viewers:  # no frame drawn yet: the first will be aimed at this state
        return
    for viewer in viewers.values():
        renderer.viewer = viewer
        viewer._init_camera()  # looks at the bodies where the reset left them
        renderer._set_cam_config()


def log_to(run_dir: Path) -> None:
    """Write MuJoCo's warnings to ``run_dir/MUJOCO_LOG.TXT`` instead of the working folder."""
    try:
        import mujoco
    except ImportError:
        return  # building the env says which extra to install
    if not hasattr(mujoco, "MjLogConfig"):  # an older MuJoCo: its log stays where it was
        return
    config = mujoco.MjLogConfig.get()
    config.logfile = str(Path(run_dir) / "MUJOCO_LOG.TXT")
    config.set()


def _check_user_backend(env_id: str | None, backend: str) -> None:
    entry = str(gym.spec(env_id).entry_point) if env_id else ""
    gymnasium_env = entry.startswith("gymnasium.envs.mujoco")
    if gymnasium_env and backend.lower() not in GYMNASIUM_BACKENDS:
        raise ConfigError(
            "MUJOCO_GL",
            f"is {backend!r}, and Gymnasium's MuJoCo envs render with egl, osmesa or glfw",
            "set MUJOCO_GL=egl (or osmesa; glfw needs a display), or unset it to let rlrec choose",
        )
    problem = _probe(backend)
    if problem is None:
        return
    if backend.lower() in ("glfw", "glx"):
        fix = (
            f"{backend} needs a display: unset MUJOCO_GL to let rlrec choose a headless backend, "
            "or run with DISPLAY set (and libglfw3 installed)"
        )
    else:
        packages = SYSTEM_PACKAGES.get(backend.lower(), "its OpenGL library")
        fix = f"apt-get install {packages}, or unset MUJOCO_GL to let rlrec choose a backend"
    raise ConfigError("MUJOCO_GL", f"is {backend!r}, which cannot render here ({problem})", fix)


def _first_working(backends: list[str]) -> str:
    problems = {}
    for backend in backends:
        problem = _probe(backend)
        if problem is None:
            return backend
        problems[backend] = problem
    tried = "; ".join(f"{b}: {p}" for b, p in problems.items())
    installs = " or ".join(f"{SYSTEM_PACKAGES.get(b, b)} ({b})" for b in backends)
    raise ConfigError(
        "MUJOCO_GL",
        f"MuJoCo cannot render without a display here ({tried})",
        f"install {installs}, e.g. apt-get install libegl1 libgl1-mesa-dri, "
        "then set MUJOCO_GL to that backend or leave it unset",
    )


def _probe(backend: str) -> str | None:
    """None if MuJoCo renders a frame with ``backend`` in a child process, else why not."""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "rendering one frame took over 2 minutes"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {done.returncode}"
    return last if len(last) <= 160 else last[:157] + "..."
