"""The reader process of scripts/bench, and the bench's handle on it.

Every read through a mount happens in this small child process
(``python -m benchmarks.worker``), so a wedged FUSE read blocks the worker, never the
benchmark: the parent (``Worker``) waits on its stdout with a deadline and kills it.
Requests and replies are JSON lines. The child side needs only the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.harness.swarm import child_env

ROOT = Path(__file__).resolve().parent.parent


class Timeout(Exception):
    """A bounded wait ran out: the system under test is reported as 'timeout'."""


class BenchError(Exception):
    """Something went wrong with one measurement: reported as 'error'."""



# ------------------------------------------------------------------ the child

def _emit(msg: dict) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _w_wait_listed(req: dict) -> dict:
    """Poll until `name` is listed in `dir` with `size` bytes: when (monotonic)."""
    folder, name, size = req["dir"], req["name"], req["size"]
    deadline = time.monotonic() + req["timeout"]
    last = "not listed"
    while True:
        try:
            if name in os.listdir(folder):
                st = os.stat(os.path.join(folder, name))
                if st.st_size == size:
                    return {"t": time.monotonic()}
                last = f"listed with size {st.st_size}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            return {"error": f"not ready within {req['timeout']}s: {last}"}
        time.sleep(0.005)


def _w_pread(req: dict) -> dict:
    """open + pread + close; times in monotonic seconds, data as sha256."""
    t0 = time.monotonic()
    fd = os.open(req["path"], os.O_RDONLY)
    try:
        data = os.pread(fd, req["size"], req["offset"])
    finally:
        os.close(fd)
    t1 = time.monotonic()
    return {"t0": t0, "t1": t1, "n": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _w_seq(req: dict) -> dict:
    """Read the whole file in `chunk` reads, hashing; stop early after `budget` s."""
    h = hashlib.sha256()
    buf = bytearray(req["chunk"])
    view = memoryview(buf)
    n = 0
    partial = False
    t0 = last = time.monotonic()
    with open(req["path"], "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
            now = time.monotonic()
            if now - last >= 0.5:
                last = now
                _emit({"progress": n, "elapsed": now - t0})
            if now - t0 >= req["budget"]:
                partial = True
                break
    t1 = time.monotonic()
    return {"bytes": n, "t0": t0, "t1": t1, "partial": partial,
            "sha256": None if partial else h.hexdigest()}


def worker_main() -> int:
    ops = {"wait_listed": _w_wait_listed, "pread": _w_pread, "seq": _w_seq}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            res = ops[req["op"]](req)
        except OSError as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        res["done"] = True
        _emit(res)
    return 0



# ------------------------------------------------------------------ the parent

class Worker:
    """The reader child process (see worker_main)."""

    def __init__(self):
        # Run from the repo root, where `-m benchmarks.worker` is found.
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=child_env())
        self.buf = b""

    def send(self, **req) -> None:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout: float, on_progress: Callable[[dict], None] | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no answer within {timeout:.0f}s")
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        raise BenchError(f"reader process died ({self.proc.poll()})")
                    self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("done"):
                if "error" in msg:
                    raise BenchError(msg["error"])
                return msg
            if on_progress:
                on_progress(msg)

    def call(self, timeout: float, **req) -> dict:
        self.send(**req)
        return self.recv(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)  # a read stuck in FUSE ends once the mount is gone
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()



if __name__ == "__main__":
    sys.exit(worker_main())
