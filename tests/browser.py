"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
null-terminated JSON messages on file descriptors 3 and 4), so the browser tests need no websocket
client and no driver package: only the system's ``chromium``.

:func:`find_chromium` gives the browser or skips the test (fails it under CI, like
:func:`conftest.require_test_extra`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import in_ci

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000",
         "--force-device-scale-factor=1", "--remote-debugging-pipe")


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    why = "no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"CI requires the browser tests' Chromium: {why}", pytrace=False)
    pytest.skip(why)


class Browser:
    """One headless Chromium with one page; :meth:`open` a file, :meth:`js` to evaluate in it.

    ``console_errors`` collects console errors, uncaught exceptions and failed loads."""

    def __init__(self, binary: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="viewer-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # the child's fd 3 reads commands, fd 4 writes replies
            r, w = os.dup(to_child_r), os.dup(from_child_w)  # neither is 3 or 4 (both in use)
            os.dup2(r, 3)  # dup2 to another number makes the copy inheritable
            os.dup2(w, 4)

        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            # close_fds=False: the fds made by dup2 survive exec; Python's own are close-on-exec
            preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cv:
                for m in messages:
                    msg = json.loads(m)
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                self._cv.notify_all()

    def call(self, method: str, session: bool = False, timeout: float = 30, **params) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: self._next in self._replies, timeout):
                raise TimeoutError(f"{method}: no reply in {timeout} s")
            reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, path: Path, timeout: float = 30) -> None:
        """Load ``path`` and wait for its load event."""
        start = len(self.events)
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        end = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[start:]):
            if time.monotonic() > end:
                raise TimeoutError(f"{path}: not loaded in {timeout} s")
            time.sleep(0.02)

    def js(self, expression: str, timeout: float = 30):
        """The value of ``expression`` (promises awaited), or RuntimeError with the exception."""
        r = self.call("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10) -> None:
        """Poll ``expression`` until true; an error (a page still navigating) counts as false
        until the timeout, which reports the last one."""
        end = time.monotonic() + timeout
        while True:
            try:
                if self.js(expression):
                    return
                last = "false"
            except RuntimeError as e:
                last = str(e)
            if time.monotonic() > end:
                raise TimeoutError(f"not true in {timeout} s: {expression} ({last})")
            time.sleep(0.05)

    def click(self, x: float, y: float) -> None:
        """A real mouse click at viewport CSS pixels ``(x, y)``."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def screenshot(self, clip: dict) -> bytes:
        """PNG of the viewport region ``clip`` (x, y, width, height in CSS pixels)."""
        r = self.call("Page.captureScreenshot", session=True, format="png",
                      clip={**clip, "scale": 1})
        return base64.b64decode(r["data"])

    @property
    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(str(p.get("args")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(str(p["entry"].get("text")))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, TimeoutError, RuntimeError):
            pass  # it may be gone already; it is killed below either way
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_child)
        shutil.rmtree(self._profile, ignore_errors=True)
