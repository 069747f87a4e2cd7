"""The encoder process behind ``rlrec.video``: ``python -m rlrec._encode_worker``.

It reads one command per line on stdin and answers on the file descriptor it inherited as stdout:

    open <json>     start a video: tmp and final path, fourcc, fps, frame shape and dtype, shm path
    frame <slot>    encode the frame in that shared-memory slot; answer "ok" (the slot is free)
    close           finish the video, rename it to its final name; answer "closed"
    timelapse <json>  string finished videos together, each frame captioned; answer "closed"
    abort           drop the video, delete the partial file; answer "aborted"

A failure is answered once as "error <message>"; frames are still acknowledged (and dropped) so
that the parent never waits forever. End of input (the parent exited, or was killed) drops the
video in progress and the shared memory: a file appears under its final name only after "close".
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """RGB(A) or grey frames to BGR ``uint8``, padded to even width and height.

    mp4v, VP8 and VP9 store 4:2:0 colour, so an odd dimension would lose its last row or column.
    """
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR)
    else:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    pad_bottom, pad_right = bgr.shape[0] % 2, bgr.shape[1] % 2
    if pad_bottom or pad_right:
        bgr = cv2.copyMakeBorder(bgr, 0, pad_bottom, 0, pad_right, cv2.BORDER_REPLICATE)
    return bgr


class Video:
    """One video being written under its temporary name."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.tmp, self.final = Path(spec["tmp"]), Path(spec["final"])
        shape = tuple(spec["shape"])
        self.slots = np.memmap(
            spec["shm"], dtype=spec["dtype"], mode="r", shape=(spec["slots"], *shape)
        )
        height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
        fourcc = cv2.VideoWriter_fourcc(*spec["fourcc"])
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, float(spec["fps"]), (width, height))
        if not self.writer.isOpened():
            raise OSError(
                f"OpenCV could not open {self.tmp} for {spec['fourcc']} at {width}x{height}"
            )

    def write(self, slot: int) -> None:
        if self.writer.write(to_bgr(self.slots[slot])) is False:  # OpenCV >= 4.10 reports it
            raise OSError(f"could not write a frame to {self.tmp} (is the disk full?)")

    def finish(self, keep: bool) -> None:
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)


def timelapse(spec: dict[str, Any]) -> None:
    """Concatenate ``spec["parts"]`` ([path, caption] pairs) into one captioned video."""
    tmp, final = Path(spec["tmp"]), Path(spec["final"])
    writer, size = None, None
    try:
        for path, caption in spec["parts"]:
            capture = cv2.VideoCapture(path)
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    fourcc = cv2.VideoWriter_fourcc(*spec["fourcc"])
                    writer = cv2.VideoWriter(str(tmp), fourcc, float(spec["fps"]), size)
                    if not writer.isOpened():
                        raise OSError(f"OpenCV could not open {tmp} for {spec['fourcc']}")
                if (frame.shape[1], frame.shape[0]) != size:
                    frame = cv2.resize(frame, size)
                _caption(frame, caption)
                if writer.write(frame) is False:
                    raise OSError(f"could not write a frame to {tmp} (is the disk full?)")
            capture.release()
    except BaseException:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
        raise
    if writer is None:
        raise OSError("the filmed videos held no frames")
    writer.release()
    os.replace(tmp, final)


def _caption(frame: np.ndarray, text: str) -> None:
    """Draw ``text`` at the top left, white on a dark outline, readable on any background."""
    scale = max(0.5, frame.shape[0] / 500)
    origin = (10, int(30 * scale))
    for color, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(
            frame,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            color,
            max(1, int(thickness * scale)),
            cv2.LINE_AA,
        )


def main() -> None:
    # Ctrl-C (and a scheduler's SIGTERM) may reach the whole process group; the parent decides
    # what happens to the video, and when the parent is gone this process sees its input end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies

    def reply(text: str) -> None:
        os.write(replies, (text + "\n").encode())

    video: Video | None = None
    ring: str | None = None
    failed = False
    try:
        for raw in sys.stdin.buffer:
            command, _, arg = raw.decode().rstrip("\n").partition(" ")
            try:
                if command == "frame":
                    if video is not None and not failed:
                        video.write(int(arg))
                    reply("ok")
                elif command == "open":
                    failed = False
                    spec = json.loads(arg)
                    ring = spec["shm"]
                    video = Video(spec)
                elif command == "timelapse":
                    timelapse(json.loads(arg))
                    reply("closed")
                elif command in ("close", "abort"):
                    if video is not None:
                        video.finish(keep=command == "close" and not failed)
                    video = None
                    reply("closed" if command == "close" else "aborted")
            except (BrokenPipeError, KeyboardInterrupt):
                raise
            except Exception as err:  # reported to the parent, which raises it in the run
                failed = True
                reply(f"error {type(err).__name__}: {' '.join(str(err).split())}")
                if command == "frame":
                    reply("ok")
                elif command in ("close", "abort"):
                    video = None
                    reply("closed" if command == "close" else "aborted")
    except BrokenPipeError:
        pass  # the parent is gone
    finally:  # input ended: a normal shutdown, or the parent died mid-video
        if video is not None:
            video.finish(keep=False)  # nothing under a final name
        if ring is not None:  # the parent removes it too; a killed parent cannot
            Path(ring).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
