"""The ``video.codec`` choices. Kept apart from ``rlrec.video`` so that checking a config imports
no encoder (a stats-only run never does).

H.264, AV1 and GIF are written by PyAV (FFmpeg's libx264, libsvtav1 and gif encoders, bundled in
its wheels); mp4v, VP9, VP8 and MJPG by OpenCV's ``cv2.VideoWriter``. OpenCV's wheels have no H.264
encoder, and MPEG-4 Part 2 (``mp4v``) plays in VLC but not in browsers, W&B, MLflow or notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlrec.errors import ConfigError

#: libx264's speed presets, fastest first (``video.preset``).
H264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
#: ``video.preset``'s default (and where a recorded config predates the key): files about
#: the size of Gymnasium's (x264's own default, medium), encoded faster than most envs render.
DEFAULT_PRESET = "veryfast"
#: The SVT-AV1 preset (0 slowest, 13 fastest) that each of those names stands for with ``av1``.
_SVT_PRESETS = dict(zip(H264_PRESETS, (13, 12, 11, 10, 9, 8, 6, 4, 2), strict=True))


@dataclass(frozen=True)
class Codec:
    """An encoder and the container it writes, as the encoder process needs them."""

    name: str
    extension: str
    #: ``pyav`` or ``opencv``: which library writes it.
    backend: str
    #: OpenCV's fourcc, or FFmpeg's encoder name for PyAV.
    encoder: str
    #: Whether browsers (and so W&B, MLflow, notebooks and report pages) play it.
    browser: bool
    #: FFmpeg's container format (PyAV).
    container: str = ""
    #: Pixel format of the stream (PyAV).
    pix_fmt: str = "yuv420p"
    #: ``video.crf`` when null: the encoder's usual default; the valid range.
    default_crf: int | None = None
    crf_range: tuple[int, int] = (0, 0)
    options: dict[str, str] = field(default_factory=dict)

    def stored_fps(self, fps: float) -> float:
        """The frame rate the file can hold closest to ``fps``: a GIF's frame delays are whole
        centiseconds (at least 2, which every browser honours), so 100 / delay.

        >>> gif, h264 = CODECS["gif"], CODECS["h264"]
        >>> gif.stored_fps(30), gif.stored_fps(60), h264.stored_fps(30)
        (33.333333333333336, 50.0, 30.0)
        """
        if self.name == "gif":
            return 100 / max(2, round(100 / fps))
        return float(fps)

    def encoder_options(self, preset: str, crf: int | None) -> dict[str, str]:
        """FFmpeg options for the PyAV encoder: the speed preset and the quality."""
        options = dict(self.options)
        crf = self.default_crf if crf is None else crf
        if self.name == "h264":
            options |= {"preset": preset, "crf": str(crf)}
            if preset == "veryfast":
                # The default. x264's veryfast with the sub-pixel search of superfast and half
                # its lookahead: measured on a Pong game and a CartPole episode, 12-15% less
                # encoder time and half the wait at a film's end (the frames x264 holds back),
                # for files within 3% of veryfast's (1.0-1.1x Gymnasium's, x264's medium).
                options["x264-params"] = "subme=1:rc-lookahead=5"
            if H264_PRESETS.index(preset) <= H264_PRESETS.index("fast"):
                # One thread: the encoder shares the machine with the loop, and x264's frame
                # threads only buffer frames (a longer flush per video). Measured at ultrafast,
                # 600x400: 10% less wall time and 20% less CPU than its default.
                options["threads"] = "1"
        elif self.name == "av1":
            options |= {"preset": str(_SVT_PRESETS[preset]), "crf": str(crf)}
        return options

    def spec(self, preset: str, crf: int | None) -> dict[str, Any]:
        """What the encoder process needs to open a writer for this codec (JSON-able)."""
        return {
            "name": self.name,
            "backend": self.backend,
            "encoder": self.encoder,
            "container": self.container,
            "pix_fmt": self.pix_fmt,
            "options": self.encoder_options(preset, crf) if self.backend == "pyav" else {},
        }


#: ``video.codec`` values; the first is the default.
CODECS: dict[str, Codec] = {
    "h264": Codec("h264", "mp4", "pyav", "libx264", True, "mp4", default_crf=23, crf_range=(0, 51)),
    "av1": Codec("av1", "mp4", "pyav", "libsvtav1", True, "mp4", default_crf=35, crf_range=(0, 63)),
    "gif": Codec("gif", "gif", "pyav", "gif", True, "gif", pix_fmt="pal8"),
    "mp4v": Codec("mp4v", "mp4", "opencv", "mp4v", False),
    "vp9": Codec("vp9", "webm", "opencv", "VP90", True),
    "vp8": Codec("vp8", "webm", "opencv", "VP80", True),
    "mjpg": Codec("mjpg", "avi", "opencv", "MJPG", False),
}


def codec_for(name: object) -> Codec:
    """The ``Codec`` for a ``video.codec`` value, or a ``ConfigError`` that lists the choices."""
    if not isinstance(name, str) or name.lower() not in CODECS:
        raise ConfigError(
            "video.codec", f"unknown codec {name!r}", f"use one of {', '.join(CODECS)}"
        )
    return CODECS[name.lower()]


def check_quality(codec: Codec, preset: object, crf: object) -> None:
    """``video.preset`` and ``video.crf`` for ``codec``: a ``ConfigError`` naming the key if not."""
    if preset not in H264_PRESETS:
        raise ConfigError(
            "video.preset",
            f"must be one of {', '.join(H264_PRESETS)}, got {preset!r}",
            "pass e.g. video.preset=veryfast (faster encodes, larger files: ultrafast)",
        )
    if crf is None:
        return
    low, high = codec.crf_range if codec.default_crf is not None else (0, 63)
    if isinstance(crf, bool) or not isinstance(crf, int) or not low <= crf <= high:
        raise ConfigError(
            "video.crf",
            f"must be an integer from {low} to {high} for {codec.name} (lower is better "
            f"quality, larger files) or null, got {crf!r}",
            f"pass e.g. video.crf={codec.default_crf or 23}, or null for the codec's default",
        )
