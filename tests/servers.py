"""Real servers on loopback for the tracking tests: an `mlflow server` (SQL backend store + proxied artifact
destination) that can be stopped and restarted on the same port and store, and an S3-compatible server (moto)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}: {tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s: {tail(log)}")


def tail(log: Path | None) -> str:
    return log.read_text()[-3000:] if log is not None and log.exists() else ""


class MlflowServer:
    """`mlflow server` with a sqlite backend store and `--artifacts-destination` (artifacts proxied through the
    server, as a shared deployment runs it). `stop()` + `start()` bring it back on the same port and store."""

    def __init__(self, directory: Path, workers: int = 1) -> None:
        self.directory = directory
        self.port = free_port()
        self.backend = f"sqlite:///{directory}/server.db"
        self.artifacts = directory / "artifacts"
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.log = directory / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend]
        command += ["--artifacts-destination", self.artifacts.as_uri(), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # it execs uvicorn
        with open(self.log, "a") as log:
            # its own session: stop() ends the server's whole process group (uvicorn workers, job runner) and
            # nothing else
            self.proc = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(f"{self.url}/health", timeout, self.proc, self.log)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if not self.running():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.time() + 20  # the port must be free again before a restart on it
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)


class S3Server:
    """An S3-compatible endpoint on loopback (moto's server mode, in a thread of this process)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def client(self):  # boto3 S3 client with the credentials of the environment
        import boto3

        return boto3.client("s3", endpoint_url=self.url)

    def objects(self, bucket: str) -> dict[str, bytes]:
        s3 = self.client()
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        ]
        return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
