"""Faults: when the decision log cannot be written (its table gone, its disk full, its PostgreSQL
restarting), /score answers 503 with Retry-After and nothing is half-written (no score without its
record, no claim in the history); /readyz says not ready while a store is down; the service
recovers, without a restart, when it is back. A worker killed under load is replaced, and every
decision a client was answered is in the log."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pipelines.local_server import Server
from serving.keys import KeyStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


@pytest.fixture(scope="module")
def home(served_home):
    return served_home("faults")


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home)
    yield srv
    srv.kill()


def _until(check, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_decision_log_that_cannot_be_written_answers_503_and_writes_nothing(server, home, good_claim):
    from features.store.history import HistoryStore

    key = KeyStore(home / "keys.json").create("scorer", "faults")[0]
    status, _ = server.call("POST", "/score", {**good_claim, "claim_id": "F-1"}, key)
    assert status == 200
    log = sqlite3.connect(home / "decisions.db")
    log.execute("ALTER TABLE decisions RENAME TO decisions_away")  # the log's table is gone
    log.commit()
    try:
        status, body, headers = server.call("POST", "/score", {**good_claim, "claim_id": "F-2"}, key, headers=True)
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert body["errors"][0]["field"] == "service" and "decision log" in body["errors"][0]["problem"]
        assert _until(lambda: server.call("GET", "/readyz")[0] == 503), "readyz still says ready"
        store = HistoryStore(f"sqlite:///{home / 'history.db'}")
        assert store.claim("F-2") is None and store.claim("F-1") is not None  # no claim without its record
        store.close()
    finally:
        log.execute("ALTER TABLE decisions_away RENAME TO decisions")
        log.commit()
        log.close()
    # ready again once WRITE_FAILURE_S has passed since the last failed write
    assert _until(lambda: server.call("GET", "/readyz")[0] == 200, 30), "readyz did not recover"
    status, _ = server.call("POST", "/score", {**good_claim, "claim_id": "F-3"}, key)
    assert status == 200
    logged = {r[0] for r in sqlite3.connect(home / "decisions.db").execute("SELECT claim_id FROM decisions")}
    assert {"F-1", "F-3"} <= logged and "F-2" not in logged


# --- under load ----------------------------------------------------------------------------------


class Load:
    """Threads posting fresh claims to ``/score`` until the block ends; every answer is kept as
    ``(claim_id, status)`` (0: no answer, the connection failed). A thread stops on its own after
    ``seconds`` so that a failed test never leaves load running."""

    def __init__(self, server: Server, key: str, claim: dict, prefix: str, threads: int = 6, seconds: float = 120):
        self.server, self.key, self.claim, self.prefix = server, key, claim, prefix
        self.stop, self.answers, self._lock = threading.Event(), [], threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i, seconds), daemon=True) for i in range(threads)]

    def _run(self, thread: int, seconds: float) -> None:
        deadline, n = time.monotonic() + seconds, 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            claim_id = f"{self.prefix}-{thread}-{n}"
            n += 1
            try:
                status = self.server.call("POST", "/score", {**self.claim, "claim_id": claim_id}, self.key)[0]
            except OSError:
                status = 0
            with self._lock:
                self.answers.append((claim_id, status))

    def statuses(self) -> dict[int, int]:
        with self._lock:
            out: dict[int, int] = {}
            for _, status in self.answers:
                out[status] = out.get(status, 0) + 1
            return out

    def answered(self, status: int = 200) -> set[str]:
        with self._lock:
            return {c for c, s in self.answers if s == status}

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=90)


def _logged(url_or_path) -> set[str]:
    import sqlalchemy as sa

    from features.sql import with_installed_driver

    url = url_or_path if "://" in str(url_or_path) else f"sqlite:///{url_or_path}"
    engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.exec_driver_sql("SELECT claim_id FROM decisions")}
    finally:
        engine.dispose()


def _in_history(home: Path, claim_ids: set[str]) -> set[str]:
    from features.store.history import HistoryStore

    store = HistoryStore(f"sqlite:///{home / 'history.db'}")
    try:
        return {c for c in claim_ids if store.claim(c) is not None}
    finally:
        store.close()


def test_a_worker_killed_under_load_is_replaced_and_no_answered_decision_is_lost(served_home, good_claim):
    home = served_home("worker_killed")
    key = KeyStore(home / "keys.json").create("scorer", "load")[0]
    srv = Server(home)
    try:
        first = _until(lambda: (w := srv.workers()) and len(w) == 2 and w, 60)
        assert first, "the server did not start its two workers"
        with Load(srv, key, good_claim, "W") as load:
            assert _until(lambda: load.statuses().get(200, 0) >= 50, 60), load.statuses()
            os.kill(first[0], signal.SIGKILL)
            replaced = _until(lambda: (w := srv.workers()) and len(w) == 2 and first[0] not in w and w, 120)
            assert replaced, f"the killed worker was not replaced: {srv.workers()}"
            assert _until(lambda: srv.call("GET", "/readyz")[0] == 200, 120)
            after = len(load.answers)
            assert _until(lambda: len(load.answers) > after + 100, 60), "no load answered after the replacement"
        assert srv.proc.poll() is None and first[1] in replaced  # the same server; the other worker untouched
        statuses = load.statuses()
        # what the killed worker held in flight got no answer (or a 503 while the workers' queue drained)
        assert set(statuses) <= {0, 200, 503} and statuses[200] > 100, statuses
        assert sum(n for s, n in statuses.items() if s != 200) <= 12, statuses
        answered = load.answered()
        missing = answered - _logged(home / "decisions.db")
        assert not missing, f"{len(missing)} answered decisions are not in the log: {sorted(missing)[:5]}"
        assert _in_history(home, answered) == answered
    finally:
        srv.kill()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system of its own (tmpfs), for a decision log whose disk fills up; skipped where
    this process may not mount one (not root)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()[:200]}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> Path:
    """Fill ``where``'s file system to the last byte."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_answers_503_writes_nothing_half_and_recovers(served_home, small_disk, good_claim, monkeypatch):
    home = served_home("disk_full")
    log_path = small_disk / "decisions.db"
    monkeypatch.setenv("CLAIMSCORE_DECISION_LOG_URL", f"sqlite:///{log_path}")
    key = KeyStore(home / "keys.json").create("scorer", "disk")[0]
    srv = Server(home)
    try:
        assert srv.call("POST", "/score", {**good_claim, "claim_id": "D-0"}, key)[0] == 200
        filler = _fill(small_disk)
        answered, refused = set(), None
        for i in range(1, 400):  # the log's WAL has room for some claims; then the disk is full
            status, body, headers = srv.call("POST", "/score", {**good_claim, "claim_id": f"D-{i}"}, key, headers=True)
            if status == 200:
                answered.add(f"D-{i}")
                continue
            assert status == 503 and int(headers["retry-after"]) >= 1, (status, body)
            assert "decision log" in body["errors"][0]["problem"], body
            refused = f"D-{i}"
            break
        assert refused, "the full disk never refused a write"
        assert _until(lambda: srv.call("GET", "/readyz")[0] == 503, 10), "readyz says ready with the log's disk full"
        assert _in_history(home, {refused}) == set()  # nothing half-written
        filler.unlink()
        assert _until(lambda: srv.call("GET", "/readyz")[0] == 200, 30), "readyz did not recover"
        assert srv.call("POST", "/score", {**good_claim, "claim_id": "D-after"}, key)[0] == 200
        logged = _logged(log_path)
        assert {"D-0", "D-after"} | answered <= logged and refused not in logged
    finally:
        srv.kill()


# --- PostgreSQL restarted under load ---------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), so that
    restarting it disturbs nothing else; skipped without PostgreSQL's programs or when not root."""
    from pipelines.local_server import free_port

    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs root and PostgreSQL's programs (initdb, pg_ctl) to run a server of its own")
    # the server runs as postgres: its folder is outside pytest's own (which only root may enter)
    data = Path(tempfile.mkdtemp(prefix="claimscore-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120)

    init = pg(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[:200]}")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"

    def ctl(action: str) -> None:
        done = pg(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "-m", "fast", action
        )
        assert done.returncode == 0, done.stderr

    ctl("start")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres", ctl
    pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(data, ignore_errors=True)


def test_postgresql_restarted_under_load_is_survived_without_a_restart(
    served_home, own_postgres, good_claim, monkeypatch
):
    url, ctl = own_postgres
    home = served_home("pg_restart")
    monkeypatch.setenv("CLAIMSCORE_DECISION_LOG_URL", url)
    monkeypatch.setenv("CLAIMSCORE_CASES_URL", url)
    key = KeyStore(home / "keys.json").create("scorer", "pg")[0]
    srv = Server(home)
    try:
        workers = _until(lambda: (w := srv.workers()) and len(w) == 2 and w, 60)
        with Load(srv, key, good_claim, "P") as load:
            assert _until(lambda: load.statuses().get(200, 0) >= 50, 60), load.statuses()
            ctl("stop")
            assert _until(lambda: load.statuses().get(503, 0) >= 5, 30), load.statuses()
            assert _until(lambda: srv.call("GET", "/readyz")[0] == 503, 10), "readyz says ready with PostgreSQL down"
            time.sleep(2)
            ctl("start")
            assert _until(lambda: srv.call("GET", "/readyz")[0] == 200, 60), "readyz did not recover"
            after = load.statuses().get(200, 0)
            assert _until(lambda: load.statuses().get(200, 0) > after + 100, 60), "no claim scored after the restart"
        assert srv.proc.poll() is None and sorted(srv.workers()) == sorted(workers)  # no restart of anything
        statuses = load.statuses()
        assert set(statuses) <= {200, 503}, statuses  # every answer a score or a 503, never a 500
        answered, refused = load.answered(200), load.answered(503)
        logged = _logged(url)
        assert answered <= logged, f"{len(answered - logged)} answered decisions are not in the log"
        assert not refused & logged and not _in_history(home, refused)
    finally:
        srv.kill()
