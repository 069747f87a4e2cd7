"""The encoder process behind ``rlrec.video``: ``python -m rlrec._encode_worker [pyav]``.

It reads one command per line on stdin and answers on the file descriptor it inherited as stdout:

    open <json>     start a video: tmp and final path, codec, fps, frame shape and dtype, shm path
    frame <slot>    encode the frame in that shared-memory slot; answer "ok" (the slot is free)
    close [path]    finish the video, rename it to its final name (or to path); answer "closed"
    join <json>     string finished videos together into one, each part's frames captioned
                    (or not: an empty caption), e.g. a timelapse or a GIF of one video;
                    answer "closed"
    abort           drop the video, delete the partial file; answer "aborted"

A failure is answered once as "error <message>", then, for close, abort and join, with the
command's own end; frames are still acknowledged (and dropped): the parent never waits forever.
End of input (the parent exited, or was killed) drops the
video in progress and the shared memory: a file appears under its final name only after "close".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: Frames acknowledged in one write; at most ``rlrec.video.MIN_SLOTS`` (8), the fewest frames
#: the parent may have in flight.
ACK_BATCH = 4


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """RGB(A) or grey frames to RGB ``uint8``, padded to even width and height.

    4:2:0 codecs (H.264, AV1, mp4v, VP8, VP9) store colour for 2x2 blocks, so an odd dimension
    would lose its last row or column (or be refused).
    """
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGBA2RGB)
    pad_bottom, pad_right = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_bottom or pad_right:
        frame = cv2.copyMakeBorder(frame, 0, pad_bottom, 0, pad_right, cv2.BORDER_REPLICATE)
    return frame


#: Full-range chroma (JPEG's, which OpenCV computes) to video range, 16-240, as H.264 stores it.
_VIDEO_RANGE_CHROMA = np.clip(np.round(128 + (np.arange(256) - 128) * 224 / 255), 0, 255).astype(
    np.uint8
)


def to_i420(rgb: np.ndarray) -> np.ndarray:
    """An even-sized RGB frame as planar 4:2:0 (BT.601, video range), the layout of ``yuv420p``.

    What FFmpeg's converter would make of it (within 2 levels), in half its time for an Atari
    frame: luma from OpenCV's own conversion, chroma from each 2x2 block's mean colour (OpenCV's
    I420 takes one pixel of the four, which fringes sharp colour edges).
    """
    height, width = rgb.shape[:2]
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # its luma is exact; chroma replaced below
    half = cv2.resize(rgb, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    crcb = cv2.LUT(cv2.cvtColor(half, cv2.COLOR_RGB2YCrCb), _VIDEO_RANGE_CHROMA)
    quarter = (height // 2) * (width // 2)
    chroma = out[height:].reshape(-1)
    cv2.extractChannel(crcb, 2, dst=chroma[:quarter].reshape(height // 2, width // 2))  # Cb (U)
    cv2.extractChannel(crcb, 1, dst=chroma[quarter:].reshape(height // 2, width // 2))  # Cr (V)
    return out


class OpenCvWriter:
    """``cv2.VideoWriter`` for mp4v, VP8, VP9 and MJPG."""

    def __init__(self, tmp: Path, codec: dict[str, Any], fps: float, size: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter_fourcc(*codec["encoder"])
        self.tmp = tmp
        self.writer = cv2.VideoWriter(str(tmp), fourcc, float(fps), size)
        if not self.writer.isOpened():
            raise OSError(f"OpenCV could not open {tmp} for {codec['name']} at {size[0]}x{size[1]}")

    def write(self, rgb: np.ndarray) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self.writer.write(bgr) is False:  # OpenCV >= 4.10 reports it
            raise OSError(f"could not write a frame to {self.tmp} (is the disk full?)")

    def release(self) -> None:
        self.writer.release()


class PyAvWriter:
    """PyAV (FFmpeg) for H.264 and AV1 in MP4, with the index at the front of the file so that a
    browser starts playing before the file has arrived, and for GIF with a palette per frame."""

    def __init__(self, tmp: Path, codec: dict[str, Any], fps: float, size: tuple[int, int]) -> None:
        import av

        self.tmp, self.pal8 = tmp, codec["pix_fmt"] == "pal8"
        self.i420 = codec["pix_fmt"] == "yuv420p"
        options = {"movflags": "+faststart"} if codec["container"] == "mp4" else {}
        self.container = av.open(str(tmp), mode="w", format=codec["container"], options=options)
        try:
            self.rate = Fraction(fps).limit_denominator(10_000)
            self.stream = self.container.add_stream(codec["encoder"], rate=self.rate)
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = codec["pix_fmt"]
            self.stream.options = codec["options"]
            self.stream.codec_context.time_base = 1 / self.rate
        except BaseException:
            self.container.close()
            raise
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        from av import VideoFrame

        if self.pal8:
            frame = VideoFrame.from_ndarray(_palette_image(rgb), format="pal8")
        elif self.i420:
            # ``from_numpy_buffer`` takes the converted planes without a copy (a tenth of a
            # millisecond a 600x400 frame) but infers the height as rows // 6 * 4, which
            # misplaces U and V whenever the height is 2 mod 4 (every Atari frame's 210 rows):
            # those are copied into planes of the right size
            i420 = to_i420(rgb)
            made = VideoFrame.from_ndarray if rgb.shape[0] % 4 else VideoFrame.from_numpy_buffer
            frame = made(i420, format="yuv420p")
        else:
            frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = self.frames, 1 / self.rate
        self.frames += 1
        self._mux(self.stream.encode(frame))

    def release(self) -> None:
        try:
            self._mux(self.stream.encode(None))  # what the encoder still holds
        finally:
            self.container.close()

    def _mux(self, packets: list[Any]) -> None:
        try:
            self.container.mux(packets)
        except OSError as err:
            raise OSError(f"could not write to {self.tmp} ({err}; is the disk full?)") from None


def _palette_image(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame as 8-bit indices into its own palette of at most 256 colours (ARGB, as PyAV's
    ``pal8`` wants it): GIF holds no more, and a palette per frame keeps each frame's colours."""
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE)
    colours = np.zeros((256, 4), np.uint8)
    rgb_palette = np.asarray(image.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    colours[:, 0] = 255
    colours[: len(rgb_palette), 1:] = rgb_palette
    return np.asarray(image), colours


def open_writer(tmp: Path, spec: dict[str, Any], size: tuple[int, int]) -> Any:
    """The writer ``spec["codec"]`` names, for frames of ``size`` (width, height)."""
    writer = PyAvWriter if spec["codec"]["backend"] == "pyav" else OpenCvWriter
    return writer(tmp, spec["codec"], float(spec["fps"]), size)


class Video:
    """One video being written under its temporary name."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.tmp, self.final = Path(spec["tmp"]), Path(spec["final"])
        shape = tuple(spec["shape"])
        self.slots = np.memmap(
            spec["shm"], dtype=spec["dtype"], mode="r", shape=(spec["slots"], *shape)
        ).view(np.ndarray)  # a memmap's slices cost 3 us each
        height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
        try:
            self.writer = open_writer(self.tmp, spec, (width, height))
        except BaseException:  # a full disk as the file starts: no partial file stays
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, slot: int) -> None:
        self.writer.write(to_rgb(self.slots[slot]))

    def finish(self, keep: bool) -> None:
        if not keep:
            # the name before and after: FFmpeg may crash closing a file that a full disk cut
            # short, and its MP4 muxer opens the file again by name as it closes
            self.tmp.unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                self.writer.release()
            self.tmp.unlink(missing_ok=True)
            return
        try:
            self.writer.release()
        except Exception:
            self.tmp.unlink(missing_ok=True)
            raise
        os.replace(self.tmp, self.final)


def join(spec: dict[str, Any]) -> None:
    """Concatenate ``spec["parts"]`` ([path, caption] pairs) into one video, each part's frames
    captioned unless its caption is empty; with ``spec["width"]``, scaled down to that width."""
    import av

    tmp, final = Path(spec["tmp"]), Path(spec["final"])
    writer, size, scale = None, None, {}
    try:
        for path, caption in spec["parts"]:
            with av.open(path) as part:
                for decoded in part.decode(video=0):
                    if writer is None and decoded.width > (spec.get("width") or decoded.width):
                        height = round(decoded.height * spec["width"] / decoded.width / 2) * 2
                        scale = {"width": spec["width"], "height": height}
                    # FFmpeg scales while it converts (cheaper than a resize afterwards)
                    frame = decoded.to_ndarray(format="rgb24", **scale)
                    if writer is None:
                        frame = to_rgb(frame)
                        size = (frame.shape[1], frame.shape[0])
                        writer = open_writer(tmp, spec, size)
                    if (frame.shape[1], frame.shape[0]) != size:
                        frame = cv2.resize(frame, size)
                    if caption:
                        _caption(frame, caption)
                    writer.write(frame)
        if writer is None:
            raise OSError("the filmed videos held no frames")
        writer.release()  # a full disk may show first here, as the last bytes go out
        writer = None
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):  # the error that stopped it is the one to tell
                writer.release()
        tmp.unlink(missing_ok=True)  # nothing half-written stays
        raise
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
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 (av1) prints a banner per video otherwise
    cv2.setNumThreads(1)  # one core to encode: the episode (and a software renderer) has the rest
    if "pyav" in sys.argv[1:]:  # the run's codec needs it: import now, not at the first frame
        import av  # noqa: F401

    # Ctrl-C (and a scheduler's SIGTERM) may reach the whole process group; the parent decides
    # what happens to the video, and when the parent is gone this process sees its input end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    unacknowledged = 0  # frames encoded whose "ok" is not written yet

    def reply(text: str) -> None:
        nonlocal unacknowledged
        os.write(replies, b"ok\n" * unacknowledged + (text + "\n").encode())
        unacknowledged = 0

    def acknowledge() -> None:
        # Each write wakes the parent (30 us on a VM's two cores): the "ok"s of ACK_BATCH frames
        # go in one. The parent waits only with all its ring's frames in flight, so at least
        # ACK_BATCH of them are here to be encoded, and the batch always fills.
        nonlocal unacknowledged
        unacknowledged += 1
        if unacknowledged >= ACK_BATCH:
            os.write(replies, b"ok\n" * unacknowledged)
            unacknowledged = 0

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
                    acknowledge()
                elif command == "open":
                    if video is not None:  # never closed (its parent gave up on it): dropped
                        video, dropped = None, video
                        dropped.finish(keep=False)
                    failed = False
                    spec = json.loads(arg)
                    ring = spec["shm"]
                    video = Video(spec)
                elif command == "join":
                    join(json.loads(arg))
                    reply("closed")
                elif command in ("close", "abort"):
                    if video is not None:
                        if arg:  # a name known only when the video ended
                            video.final = Path(arg)
                        video.finish(keep=command == "close" and not failed)
                    video = None
                    reply("closed" if command == "close" else "aborted")
            except (BrokenPipeError, KeyboardInterrupt):
                raise
            except Exception as err:  # reported to the parent, which raises it in the run
                failed = True
                reply(f"error {type(err).__name__}: {' '.join(str(err).split())}")
                if command == "frame":
                    acknowledge()
                elif command == "join":
                    reply("closed")  # the command's end, after its error: the parent waits for it
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
