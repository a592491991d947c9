"""Worker OS processes of the Cluster and Sentinel tests (``fleet_worker.py``), driven by JSON lines."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fleet_worker.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
HANG = 60.0  # seconds after which a silent worker fails the test instead of hanging it


class Worker:
    """One ``fleet_worker.py serve`` process: ``ask(op, ...)`` sends a command, returns the reply."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "serve", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._reply() == {"ready": True}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _reply(self) -> Any:
        try:
            return json.loads(self._lines.get(timeout=HANG))
        except queue.Empty:
            raise AssertionError(f"worker {self.proc.pid} gave no answer in {HANG}s") from None

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = self._reply()
        return reply

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_lockers(spec: dict[str, Any], count: int, go: Path) -> list[dict[str, Any]]:
    """Start ``count`` lock workers, release them at once through ``go``, collect their output."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "lock", json.dumps(spec), str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
    go.write_text("go")
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, out
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results
