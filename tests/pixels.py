"""The pixel oracle: a film decoded with PyAV against the frames the env rendered.

PSNR (peak signal-to-noise ratio, in dB over the RGB channels) per frame; a film is judged by its
worst frame and its mean. Planes placed wrong score ~14 dB; a lossy codec that works, 32-46 dB on
the synthetic frames below; an exact film, infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

#: The worst frame each codec's default settings must reach on the synthetic frames and on real
#: envs' renders (dB), as the README's codec table states them; None: exact (GIF, whose palette
#: holds every colour of these frames).
FLOORS: dict[str, float | None] = {
    "h264": 28.0,  # measured: 31.9 (synthetic, 77x101), 29.9 (MiniGrid at tile_size 13, 65x65)
    "av1": 28.0,  # 31.2
    "gif": None,
    "mp4v": 30.0,  # 32.4
    "vp9": 30.0,  # 33.2
    "vp8": 30.0,  # 33.3
    "mjpg": 29.0,  # 31.8
}


def psnr(film: np.ndarray, rendered: np.ndarray) -> float:
    """PSNR of one decoded frame against the rendered one (inf when equal)."""
    mse = np.mean((film.astype(np.float64) - rendered.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@dataclass(frozen=True)
class Fidelity:
    """How close a film is to the frames it was made of."""

    worst: float
    mean: float
    frames: int

    def exact(self) -> bool:
        return self.worst == math.inf


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a film as RGB, decoded by PyAV (FFmpeg): what a player shows."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def fidelity(path: Path, rendered: list[np.ndarray]) -> Fidelity:
    """The film at ``path`` against ``rendered``, frame by frame: as many frames, each of the
    rendered size (the film may hold one more row or column, repeated, to make sizes even)."""
    film = decoded(path)
    assert len(film) == len(rendered), (path.name, len(film), len(rendered))
    scores = []
    for got, want in zip(film, rendered, strict=True):
        want = _rgb(want)
        height, width = want.shape[:2]
        assert got.shape[0] - height in (0, 1) and got.shape[1] - width in (0, 1), (
            path.name,
            got.shape,
            want.shape,
        )
        scores.append(psnr(got[:height, :width], want))
    finite = [s for s in scores if s != math.inf]
    mean = float(np.mean(finite)) if finite else math.inf
    return Fidelity(min(scores), mean, len(scores))


def assert_faithful(path: Path, rendered: list[np.ndarray], codec: str = "h264") -> Fidelity:
    """``path`` decodes to ``rendered`` within ``codec``'s floor (exactly, for GIF)."""
    result = fidelity(path, rendered)
    floor = FLOORS[codec]
    if floor is None:
        assert result.exact(), (path.name, result)
    else:
        assert result.worst >= floor, (path.name, result)
    return result


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    return frame[:, :, :3]


def synthetic_frame(width: int, height: int, i: int) -> np.ndarray:
    """Frame ``i`` of a still background of coloured 30-px blocks and a 12-px white square that
    moves: sharp colour edges (what 4:2:0 sampling blurs) and motion (what inter-frame coding
    predicts)."""
    rows, cols = np.indices((height, width))
    frame = _PALETTE[((rows // 30) * 7 + cols // 30) % len(_PALETTE)]
    x, y = (7 * i) % max(1, width - 12), (5 * i) % max(1, height - 12)
    frame[y : y + 12, x : x + 12] = 255
    return frame


def synthetic(width: int, height: int, n: int = 10) -> list[np.ndarray]:
    """``n`` frames of ``synthetic_frame``."""
    return [synthetic_frame(width, height, i) for i in range(n)]


_PALETTE = np.array(
    [[200, 40, 40], [40, 160, 60], [50, 70, 200], [230, 200, 40], [20, 20, 20], [120, 60, 160]],
    np.uint8,
)


def episode_frames(width: int, height: int, length: int) -> list[np.ndarray]:
    """What ``tests.envs:PixelCartPole-v0`` renders in an episode of ``length`` steps: the reset
    frame, then one a step (frame ``i`` is ``synthetic_frame(width, height, i)``)."""
    return synthetic(width, height, length + 1)


def grid(cells: list[np.ndarray], cols: int) -> np.ndarray:
    """Frames side by side, ``cols`` to a row (black where a row has fewer): a tiled film's
    frame, built here with NumPy alone."""
    blank = np.zeros_like(cells[0])
    rows = [cells[i : i + cols] for i in range(0, len(cells), cols)]
    rows[-1] = rows[-1] + [blank] * (cols - len(rows[-1]))
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
