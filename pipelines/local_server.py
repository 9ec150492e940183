"""A real ClaimScore server for tests and benchmarks: ``claimscore serve`` in a process of its own
on a free port on 127.0.0.1, ready when ``/readyz`` answers 200."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 300
"""A service loads its whole history into memory before it is ready: with a million claims, about
a minute and a half on a busy 2-core machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        env = {
            **os.environ,
            "CLAIMSCORE_HOME": str(home),
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        self._log = open(home / "server.log", "w")  # noqa: SIM115 - handed to the child, closed below
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from pipelines.cli import main; sys.exit(main())",
                "serve",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log,  # the workers' log lines go to stdout: kept beside the errors
            stderr=self._log,
            start_new_session=True,
        )
        self._log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + (home / "server.log").read_text()[-2000:])
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.kill()  # a server that never became ready is not left running (and holding its memory)
        raise RuntimeError(f"server not ready in {START_TIMEOUT_S} s: " + (home / "server.log").read_text()[-2000:])

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        key: str | None = None,
        headers: bool = False,
    ):
        """``(status, decoded body)``, with ``headers`` ``(status, body, headers)`` (names lower-case)."""
        if isinstance(body, dict | list):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = r.status, _decode(r.read()), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            answer = e.code, _decode(e.read()), {k.lower(): v for k, v in e.headers.items()}
        return answer if headers else answer[:2]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def workers(self) -> list[int]:
        """Pids of this server's BentoML workers (each runs in a session of its own)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid), "-f", "_bentoml_impl.worker.service"], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]


def _decode(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
