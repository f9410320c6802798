"""A throwaway local Ray cluster for tests and benchmarks: `ray start --head` on 127.0.0.1 with its own ports and
temp dir, stopped by signalling the `ray start --block` process (which stops every process it started).

Not `ray stop`: that stops every Ray process of the machine, including clusters this code did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
# Ray's local clusters and the drivers that join them: no token authentication, no usage report
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    def __init__(self, num_cpus: int = 2, start_timeout: float = 120.0) -> None:
        self.num_cpus, self.start_timeout = num_cpus, start_timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        # short: Ray's Unix sockets live under it and a socket path may not exceed 107 bytes
        self.temp_dir = tempfile.mkdtemp(prefix="rayfw", dir="/tmp")
        self.log = Path(self.temp_dir, "ray_start.log")

    def __enter__(self) -> LocalRayCluster:
        cmd = [
            str(RAY), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1",
            "--port", str(self.port),
            "--num-cpus", str(self.num_cpus),
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--temp-dir", self.temp_dir,
            # ports Ray would otherwise take at fixed defaults, so clusters of parallel test runs do not collide
            "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start failed:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops its processes
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what it started
                self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
