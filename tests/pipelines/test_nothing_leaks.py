"""Nothing leaks: claims carrying raw phones, addresses and bank accounts are scored and recorded,
every command that writes runs on them, and no raw identifier (as sent or normalised) and no API
key is found anywhere in the state directory or in what the commands print."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from features.identity import normalise_account, normalise_phone
from pipelines.cli import main
from tests.live import score_in_process

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_mode")]


def _needles(frame: pd.DataFrame) -> set[str]:
    """Each raw identifier as sent, and its normalised digits (a phone's international form, an
    account's characters): what must never be written."""
    out: set[str] = set()
    for column, normalise in (("phone", normalise_phone), ("payee_account", normalise_account), ("address", None)):
        for value in frame[column].dropna().astype(str):
            out.add(value)
            if normalise is not None and (n := normalise(value)) and len(n) >= 8:
                out.add(n)
    return {n for n in out if len(n) >= 8}


def _text(path: Path) -> str:
    """What a file holds, as one text: Parquet cells, SQLite rows, else its bytes (as Latin-1)."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return "\n".join(" ".join(map(str, frame[c].tolist())) for c in frame.columns)
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        conn = sqlite3.connect(path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return "\n".join("\t".join(map(str, row)) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))
        finally:
            conn.close()
    return path.read_bytes().decode("latin-1")


def _matcher(needles: set[str]) -> re.Pattern:
    """One pattern for every needle, as a trie (one pass over a text, whatever the needles' number)."""
    trie: dict = {}
    for n in needles:
        node = trie
        for ch in n:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        ends = "" in node
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = "(?:" + "|".join(branches) + ")" if len(branches) > 1 else branches[0]
        return f"(?:{body})?" if ends else body

    return re.compile(pattern(trie))


def test_no_raw_identifier_or_key_is_written_anywhere(served_home, champion, tmp_path, monkeypatch, capsys):
    from features.config import load_settings
    from serving.keys import KeyStore

    home = served_home("leaks")
    monkeypatch.setenv("CLAIMSCORE_HOME", str(home))
    inputs = {home / "claims.parquet"}  # the raw table the fixture trained from: the user's, not ours
    live = champion[1].iloc[:300]
    assert live["phone"].notna().any() and live["payee_account"].notna().any()
    live_file = tmp_path / "live.parquet"  # outside the state directory, as a user's file would be
    live.to_parquet(live_file)
    keys = [KeyStore(home / "keys.json").create(role, role)[0] for role in ("scorer", "investigator", "admin")]

    settings = load_settings()
    _, referred = score_in_process(settings, live, "leak-test")

    # the state directory already holds a training run's MLflow artefacts (model card, plots, tables,
    # validation report, bundles): the session champion was trained into it from the raw table
    printed = []
    for args in (
        ["monitor", "--since", "2000-01-01"],
        ["backtest", "--data", str(live_file), "--optimise", "--out", str(home / "reports" / "backtest")],
        ["score", "--data", str(live_file), "--out", str(home / "reports" / "scored.csv")],
        *(["audit", "--claim", claim] for claim in referred[:2]),
        ["cases", "list"],
    ):
        capsys.readouterr()
        code = main(args)
        out = capsys.readouterr()
        printed.append(out.out + out.err)
        assert code in (0, 3), (args, out.err)  # monitor exits 3 when it alerts

    needles = _needles(live) | _needles(pd.read_parquet(home / "claims.parquet").head(2_000))
    assert len(needles) > 500
    files = [p for p in home.rglob("*") if p.is_file() and p not in inputs and not p.name.endswith(".lock")]
    assert any(p.name == "decisions.db" for p in files) and any(p.suffix == ".html" for p in files)
    matcher = _matcher(needles | set(keys))
    assert matcher.search(_text(home / "claims.parquet")), "the search finds raw identifiers where they are"
    found = []
    for where, text in [*((str(p.relative_to(home)), _text(p)) for p in files), *(("printed", t) for t in printed)]:
        hit = matcher.search(text)
        if hit:
            found.append(f"{where}: {'an API key' if hit.group() in keys else hit.group()}")
    assert not found, found[:10]
