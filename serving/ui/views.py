"""What the pages show, worked out in Python so the templates only lay it out: the reasons
waterfall's bars, the queue's sort and page links, the claim's facts as they may be shown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from features.identity import HASH_PREFIX, is_hashed, personal_fields, short_hash

TOP_BARS = 8
"""Contributions drawn one by one in the reasons chart; the rest are one "all other features" bar."""
QUEUE_PATH = "/ui/queue"


def claim_path(claim_id: str) -> str:
    """The address of a claim's page."""
    return f"/ui/claims/{quote(claim_id, safe='')}"


# --- the reasons chart --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    """The catalog's plain words for the feature and its value (or what the bar stands for)."""
    contribution: float
    start: float
    end: float
    kind: str
    """``up`` (raises the log-odds), ``down`` (lowers them), ``base`` or ``total``."""

    @property
    def low(self) -> float:
        return min(self.start, self.end)

    @property
    def high(self) -> float:
        return max(self.start, self.end)

    @property
    def spoken(self) -> str:
        """The bar as one sentence (its accessible name)."""
        if self.kind == "base":
            return f"{self.label}: {self.end:+.2f} log-odds"
        if self.kind == "total":
            return f"{self.label}: {self.end:+.2f} log-odds"
        way = "raises" if self.contribution >= 0 else "lowers"
        return f"{self.label}: {way} the log-odds by {abs(self.contribution):.2f}"


@dataclass(frozen=True)
class Waterfall:
    model: str
    score: float
    bars: list[Bar]
    lo: float
    hi: float
    ticks: list[float]

    def x(self, value: float, left: float, width: float) -> float:
        """Where ``value`` (log-odds) falls on a chart ``width`` wide starting at ``left``."""
        return left + (value - self.lo) / (self.hi - self.lo) * width


def waterfall(model: str, explanation: Mapping[str, Any], top: int = TOP_BARS) -> Waterfall:
    """The bars from the model's base value to its raw score (log-odds): the ``top`` contributions
    by size, then one bar for all the others, so the bars add up to the raw score exactly."""
    base = float(explanation["base_value"])
    raw = float(explanation["raw_score"])
    contributions = sorted(explanation["contributions"], key=lambda c: abs(c["contribution"]), reverse=True)
    shown, rest = contributions[:top], contributions[top:]
    bars = [Bar("Starting point: the average claim", base, base, base, "base")]
    at = base
    for c in shown:
        value = float(c["contribution"])
        bars.append(Bar(str(c.get("text") or c["feature"]), value, at, at + value, "up" if value >= 0 else "down"))
        at += value
    if rest:
        others = raw - at  # what the top bars leave: the rest's sum, and any rounding in the base value
        bars.append(Bar(f"All other features ({len(rest)})", others, at, at + others, "up" if others >= 0 else "down"))
        at += others
    bars.append(Bar("This claim (log-odds before calibration)", raw, raw, raw, "total"))
    points = [base, raw, *(b.start for b in bars), *(b.end for b in bars), 0.0]
    lo, hi = _nice_range(min(points), max(points))
    return Waterfall(model, float(explanation.get("score", _sigmoid(raw))), bars, lo, hi, _ticks(lo, hi))


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    return math.floor((lo - pad) * 2) / 2, math.ceil((hi + pad) * 2) / 2


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50) if span / s <= 8)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 6) for i in range(int((hi - first) / step) + 1)]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- the queue ----------------------------------------------------------------------------------

SORTABLE = {
    "claim_id": None,
    "score": "score",
    "queue": None,
    "status": "status",
    "assignee": "assignee",
    "region": "region",
    "amount": "amount",
    "opened": "age",
    "due": "due",
}
"""The queue table's columns and the sort key each header sorts by (None: not sortable)."""
DESCENDING_FIRST = {"score", "amount", "age"}
"""Sort keys whose first click sorts largest (or oldest) first."""


def query_string(params: Sequence[tuple[str, str]], **changes: str | None) -> str:
    """``params`` with each of ``changes`` replaced (None: removed), as ``?a=1&b=2``."""
    # an empty status is kept: it means "any status" (no status at all means every open case)
    kept = [(k, v) for k, v in params if k not in changes and (v != "" or k == "status")]
    kept += [(k, v) for k, v in changes.items() if v is not None]
    return "?" + urlencode(kept) if kept else ""


def sort_links(params: Sequence[tuple[str, str]]) -> dict[str, dict[str, str | None]]:
    """Per sortable column: the link that sorts by it (again: the other way) and, for the column the
    queue is sorted by, ``ascending`` or ``descending`` (for ``aria-sort``)."""
    current = dict(params).get("sort") or "-score"
    key, descending = current.removeprefix("-"), current.startswith("-")
    out: dict[str, dict[str, str | None]] = {}
    for column, sort in SORTABLE.items():
        if sort is None:
            continue
        if sort == key:
            new, state = (sort if descending else f"-{sort}"), ("descending" if descending else "ascending")
        else:
            new, state = (f"-{sort}" if sort in DESCENDING_FIRST else sort), None
        out[column] = {"href": QUEUE_PATH + query_string(params, sort=new, offset=None), "state": state}
    return out


def page_links(params: Sequence[tuple[str, str]], total: int, limit: int, offset: int) -> dict[str, Any]:
    """Previous and next page links (None where there is none) and "cases a-b of n"."""
    prev = QUEUE_PATH + query_string(params, offset=str(max(offset - limit, 0))) if offset > 0 else None
    nxt = QUEUE_PATH + query_string(params, offset=str(offset + limit)) if offset + limit < total else None
    first, last = (offset + 1, min(offset + limit, total)) if total else (0, 0)
    return {"prev": prev, "next": nxt, "first": first, "last": last, "total": total}


def age(opened: str | datetime | None, now: datetime | None = None) -> str:
    """How long ago a case was opened, in the largest whole unit: "3 d", "5 h", "12 min"."""
    if opened is None:
        return ""
    at = datetime.fromisoformat(opened) if isinstance(opened, str) else opened
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    seconds = max(((now or datetime.now(UTC)) - at).total_seconds(), 0)
    if seconds >= 86_400:
        return f"{int(seconds // 86_400)} d"
    if seconds >= 3_600:
        return f"{int(seconds // 3_600)} h"
    return f"{int(seconds // 60)} min"


def day(value: str | datetime | None) -> str:
    if value is None:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d")


def moment(value: str | datetime | None) -> str:
    if value is None:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M:%S")


def local_path(target: str | None, default: str = QUEUE_PATH) -> str:
    """``target`` if it is a page of this service (``/ui/...``, no scheme or host), else ``default``:
    a sign-in link cannot send anyone to another site."""
    if not target or "\\" in target or any(ord(ch) < 32 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or parts.path.startswith("/ui/login"):
        return default
    return target


# --- the claim ----------------------------------------------------------------------------------

_PERSONAL = set(personal_fields())


def shown_value(name: str, value: Any) -> str:
    """A fact as the page may show it: identifiers only as the start of their keyed hash."""
    if value is None:
        return "—"
    if is_hashed(value):
        return f"{HASH_PREFIX}{short_hash(value)}…"
    if name in _PERSONAL:
        return "(hidden)"  # a personal field that is not a hash is never shown
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:g}"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return value[:19].replace("T", " ").removesuffix(" 00:00:00")
    return str(value)


def facts(claim: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The claim's facts as (name, shown value), in the store's order; outcome fields included."""
    if not claim:
        return []
    return [(name.replace("_", " "), shown_value(name, value)) for name, value in claim.items()]


def trail_line(event: Mapping[str, Any]) -> str:
    """What an audit event changed, in words: ``status: open -> in_review``, or the new value."""
    if event.get("field"):
        before = "—" if event.get("previous") is None else event["previous"]
        after = "—" if event.get("new") is None else event["new"]
        return f"{event['field']}: {before} → {after}"
    return event.get("new") or ""


# --- monitoring ---------------------------------------------------------------------------------

WINDOW_FACTS = (
    ("claims", "Claims"),
    ("source", "Source"),
    ("period", "Period"),
    ("first_decision", "First decision"),
    ("last_decision", "Last decision"),
    ("as_of", "Labels as of"),
    ("models", "Models"),
)
"""The window's facts the monitoring page shows, in order, with their words (a missing one is left out)."""


def monitoring_run(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the monitoring page shows of a run's summary: when, its window, and its alert lines."""
    window = summary.get("window") if isinstance(summary.get("window"), Mapping) else {}
    alerts = [a for a in summary.get("alerts") or [] if isinstance(a, Mapping)]
    return {
        "generated_at": _moment_or_text(summary.get("generated_at")),
        "window": [(words, str(window[key])) for key, words in WINDOW_FACTS if window.get(key) not in (None, "")],
        "alerts": [{"section": str(a.get("section", "")), "message": str(a.get("message", ""))} for a in alerts],
    }


def _moment_or_text(value: Any) -> str:
    if not isinstance(value, str):
        return "unknown"
    try:
        return moment(value) + (" UTC" if value.endswith(("+00:00", "Z")) else "")
    except ValueError:
        return value
