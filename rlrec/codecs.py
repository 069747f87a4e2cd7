"""The ``video.codec`` choices. Kept apart from ``rlrec.video`` so that checking a config does not
import OpenCV (a stats-only run never does)."""

from __future__ import annotations

from dataclasses import dataclass

from rlrec.errors import ConfigError


@dataclass(frozen=True)
class Codec:
    """An OpenCV fourcc and the container it is written in."""

    fourcc: str
    extension: str


#: ``video.codec`` values. VP8/VP9 in WebM play in browsers but encode 5-10x slower than mp4v.
CODECS: dict[str, Codec] = {
    "mp4v": Codec("mp4v", "mp4"),
    "vp9": Codec("VP90", "webm"),
    "vp8": Codec("VP80", "webm"),
    "mjpg": Codec("MJPG", "avi"),
}


def codec_for(name: object) -> Codec:
    """The ``Codec`` for a ``video.codec`` value, or a ``ConfigError`` that lists the choices."""
    if not isinstance(name, str) or name.lower() not in CODECS:
        raise ConfigError(
            "video.codec", f"unknown codec {name!r}", f"use one of {', '.join(CODECS)}"
        )
    return CODECS[name.lower()]
