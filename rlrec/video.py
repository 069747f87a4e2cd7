"""Streaming video: frames go to ``cv2.VideoWriter`` on a background thread while the episode runs.

Memory does not grow with episode length (a bounded queue holds a few frames), encoding overlaps
stepping and rendering (OpenCV releases the GIL while it encodes), and a file appears under its
final name only once it is complete: it is written under a dot-prefixed temporary name and renamed.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from rlrec.codecs import Codec

#: Frames waiting for the encoder; bounds memory whatever the episode length.
QUEUE_FRAMES = 16

_CLOSE = None  # queue sentinel


class VideoWriter:
    """One video, encoded frame by frame on its own thread.

    Example::

        writer = VideoWriter(Path("videos/eval-episode-0.mp4"), CODECS["mp4v"], fps=50)
        writer.add(env.render())   # as many times as there are frames
        writer.close()             # the file now exists under its final name
    """

    def __init__(self, path: Path, codec: Codec, fps: float) -> None:
        self.path = path
        self.tmp_path = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.frames = 0
        self._codec, self._fps = codec, float(fps)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._aborted = False
        self._thread = threading.Thread(target=self._encode, name=f"rlrec-video-{path.stem}")
        self._thread.daemon = True
        self._thread.start()

    def add(self, frame: np.ndarray) -> None:
        """Queue one RGB frame; blocks only while the encoder is ``QUEUE_FRAMES`` behind."""
        if self._error is not None:
            raise self._error
        self._queue.put(frame)
        self.frames += 1

    def close(self) -> Path:
        """Finish encoding, move the file to its final name and return that name."""
        self._queue.put(_CLOSE)
        self._thread.join()
        if self._error is not None:
            self._discard()
            raise self._error
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file; nothing appears under the final name."""
        self._aborted = True
        self._queue.put(_CLOSE)  # the encoder drains the queue, so this never blocks for long
        self._thread.join()
        self._discard()

    def _encode(self) -> None:
        writer = None
        try:
            while (frame := self._queue.get()) is not None:
                if self._aborted:
                    continue  # drain without encoding
                bgr = _to_bgr(frame)
                if writer is None:
                    writer = self._open(bgr.shape[1], bgr.shape[0])
                if writer.write(bgr) is False:  # OpenCV >= 4.10 reports failed writes
                    raise OSError(f"could not write a frame to {self.tmp_path} (is the disk full?)")
        except BaseException as err:  # handed to the main thread by add()/close()
            self._error = err
            while self._queue.get() is not None:  # keep draining so add() never blocks forever
                pass
        finally:
            if writer is not None:
                writer.release()

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter_fourcc(*self._codec.fourcc)
        writer = cv2.VideoWriter(str(self.tmp_path), fourcc, self._fps, (width, height))
        if not writer.isOpened():
            raise OSError(
                f"OpenCV could not open {self.tmp_path} "
                f"for {self._codec.fourcc} at {width}x{height}"
            )
        return writer

    def _discard(self) -> None:
        self.tmp_path.unlink(missing_ok=True)


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    """RGB(A) or grey ``uint8`` to BGR, padded to even width and height.

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
