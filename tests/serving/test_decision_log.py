"""The decision log: what was acknowledged is on disk, even when the writer is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from serving.decision_log import Decision, DecisionLog, DecisionLogError, input_hash


def _decision(i: int) -> Decision:
    return Decision(claim_id=f"C{i}", input_hash=input_hash({"claim_id": f"C{i}", "amount": i}),
                    route="standard", scores={"fraud": 0.01 * i, "fast_track": 0.5},
                    features={"claimed_amount": float(i), "channel": "web", "missing": None},
                    rules=["early_claim"] if i % 2 else [], reasons={"fraud": [{"feature": "claimed_amount"}]},
                    versions={"fraud": "3", "policy": "abc"}, key_id="k1")


def test_decisions_round_trip(tmp_path):
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.db'}")
    ids = log.write([_decision(1), _decision(2)])
    assert ids == [1, 2] and log.count() == 2
    row = log.read("C1")[0]
    assert row["scores"] == {"fraud": 0.01, "fast_track": 0.5} and row["rules"] == ["early_claim"]
    assert row["features"]["missing"] is None and row["versions"]["policy"] == "abc"


def test_input_hash_ignores_key_order_only():
    assert input_hash({"a": 1, "b": 2}) == input_hash({"b": 2, "a": 1}) != input_hash({"a": 1, "b": 3})


def test_acknowledged_decisions_survive_sigkill(tmp_path):
    db = tmp_path / "d.db"
    writer = textwrap.dedent(f"""
        import sys
        from serving.decision_log import Decision, DecisionLog
        log = DecisionLog("sqlite:///{db}")
        i = 0
        while True:
            ids = log.write([Decision(claim_id=f"C{{i}}-{{j}}", input_hash="h", route="standard",
                                      scores={{"fraud": 0.1}}) for j in range(3)])
            print(*ids, flush=True)   # acknowledged only after the commit
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    while len(acknowledged) < 300:
        acknowledged += [int(x) for x in proc.stdout.readline().split()]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = {row["id"] for row in DecisionLog(f"sqlite:///{db}").read()}
    assert set(acknowledged) <= stored


def test_an_unwritable_log_is_one_readable_error(tmp_path):
    with pytest.raises(DecisionLogError, match="decision log"):
        DecisionLog(f"sqlite:///{tmp_path / 'missing-dir' / 'sub' / 'd.db'}").write([_decision(1)])


@pytest.mark.postgres
def test_decisions_round_trip_on_postgresql():
    import sqlalchemy as sa

    url = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        from features.sql import with_installed_driver

        engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)), connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
    except Exception:  # noqa: BLE001
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    schema = f"dl_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        log = DecisionLog(f"{url}?options=-csearch_path%3D{schema}")
        assert log.write([_decision(5), _decision(6)]) == [1, 2]
        assert log.read("C6")[0]["scores"]["fraud"] == pytest.approx(0.06)
        log.close()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
