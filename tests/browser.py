"""A real browser for the tests: Debian's chromium driven by playwright, pages served on 127.0.0.1.

``playwright install`` cannot download browsers on every machine, so the system's ``chromium`` is
launched by path. Where it is missing the browser tests skip with one line saying what to install;
with ``RLREC_REQUIRE_ALL=1`` (CI, which installs it) they fail instead.
"""

from __future__ import annotations

import functools
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Flags for a headless chromium on a machine with no display and no network but loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _RangeHandler(SimpleHTTPRequestHandler):
    """A static file server that answers ``Range`` requests, as browsers ask for media."""

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(match[1]) if match[1] else max(0, size - int(match[2] or 0))
        end = min(int(match[2]), size - 1) if match[1] and match[2] else size - 1
        if start >= size:
            self.send_error(416)
            return None
        handle = path.open("rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0 and (chunk := source.read(min(65536, remaining))):
            outputfile.write(chunk)
            remaining -= len(chunk)
        self._remaining = None
        return None


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) for the block; yield its base URL."""
    handler = functools.partial(_RangeHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


#: Loads one <video> and reports what the browser made of it (or of a <img>, for a GIF).
PLAYER_HTML = """<!doctype html><html><body style="margin:0;background:#808">
<video id="v" muted playsinline preload="auto" src="{src}"></video></body></html>"""

STATE_JS = """() => {
  const v = document.getElementById("v");
  return {readyState: v.readyState, error: v.error && v.error.code, duration: v.duration,
          width: v.videoWidth, height: v.videoHeight, currentTime: v.currentTime,
          canPlay: v.canPlayType(v.src.endsWith(".webm") ? "video/webm" : "video/mp4")};
}"""


class VideoProbe:
    """A page in a real chromium that loads and plays videos served from a folder."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page, self.base_url = page, base_url

    def load(self, relative: str, timeout_s: float = 20) -> dict[str, Any]:
        """Open a page with ``<video src=relative>``; wait until it can show a frame or fails."""
        html = PLAYER_HTML.format(src=f"{self.base_url}/{relative}")
        url = f"{self.base_url}/__player__.html"  # same origin as the video, not on disk
        self.page.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
        self.page.goto(url)
        self.page.unroute(url)
        self.page.wait_for_function(
            "() => { const v = document.getElementById('v');"
            " return v.readyState >= 2 || v.error !== null; }",
            timeout=timeout_s * 1000,
        )
        return self.page.evaluate(STATE_JS)

    def play_for(self, seconds: float) -> float:
        """Play the loaded video for ``seconds`` of wall time; its ``currentTime`` then."""
        self.page.evaluate("() => document.getElementById('v').play()")
        self.page.wait_for_timeout(seconds * 1000)
        return self.page.evaluate("() => document.getElementById('v').currentTime")

    def screenshot_at(self, time_s: float) -> bytes:
        """A PNG of the video element showing the frame at ``time_s`` (paused there)."""
        self.page.evaluate(
            "t => new Promise(done => { const v = document.getElementById('v'); v.pause();"
            " v.addEventListener('seeked', () => requestAnimationFrame(() =>"
            " requestAnimationFrame(done)), {once: true}); v.currentTime = t; })",
            time_s,
        )
        return self.page.locator("#v").screenshot()
