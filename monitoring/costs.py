"""The cost and time model a routing backtest prices policies with, per line of business.

``claimscore backtest --cost-model FILE.yaml`` replaces the defaults key by key; a line of business
under ``lines:`` overrides only what it names (its routes route by route). Unknown keys are refused
by name.

The defaults are illustrative round figures for a mid-sized motor and property book, not measured
from any insurer and not taken from a published survey: they make the trade-offs visible (a
fast-tracked claim is cheap and quick; an SIU referral is slow and costs an investigation; a
fraud caught saves most of its amount). Replace every figure with the insurer's own before reading
a backtest's money as money. What each figure means:

- ``handling``: internal cost of handling one claim on that route (staff time, systems), in the
  book's currency;
- ``days``: working days from report to payment on that route (the cycle-time model);
- ``investigation``: cost of one SIU investigation, on top of the referral's handling;
- ``fraud_saved_share``: share of a fraudulent claim's amount not paid when the SIU catches it
  (recoveries and partial payments make it less than 1);
- ``slipped_fraud_cost``: cost of a fraud that is paid out, beyond its amount (rings encouraged,
  later claims), per claim;
- ``detection_rate``: share of fraudulent claims an investigation confirms (how the backtest turns
  confirmed fraud into an estimate of fraud; see :mod:`monitoring.backtest`);
- ``weekmask`` and ``holidays``: the insurer's calendar, which turns a route's working days into the
  calendar days a claimant waits (a claim reported on a Friday and paid in 2 working days is paid
  on Tuesday).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.config import invalid, read_yaml
from features.errors import ConfigError
from serving.model.routing import ROUTES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteCost(_Strict):
    handling: float = Field(ge=0)
    """Cost of handling one claim on this route."""
    days: float = Field(ge=0)
    """Working days from report to payment on this route."""


DEFAULT_ROUTES: dict[str, RouteCost] = {
    "fast_track": RouteCost(handling=60, days=2),
    "standard": RouteCost(handling=250, days=12),
    "specialist": RouteCost(handling=900, days=30),
    "siu_referral": RouteCost(handling=250, days=45),
}


class LineCosts(_Strict):
    routes: dict[str, RouteCost] = DEFAULT_ROUTES
    investigation: float = Field(1_200, ge=0)
    fraud_saved_share: float = Field(0.85, ge=0, le=1)
    slipped_fraud_cost: float = Field(0, ge=0)

    def model_post_init(self, _context: Any) -> None:
        missing = [r for r in ROUTES if r not in self.routes]
        unknown = [r for r in self.routes if r not in ROUTES]
        if missing or unknown:
            raise ValueError(
                f"routes must be exactly {', '.join(ROUTES)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )


class CostModel(_Strict):
    default: LineCosts = LineCosts()
    lines: dict[str, LineCosts] = {}
    """Per line of business (``motor``, ``home``...): its own costs (see :func:`load_cost_model`
    for how a file's partial overrides are filled from ``default``)."""
    detection_rate: float = Field(0.8, gt=0, le=1)
    weekmask: str = "Mon Tue Wed Thu Fri"
    """The insurer's working days of the week (numpy's ``busday`` week mask)."""
    holidays: tuple[str, ...] = ()
    """The insurer's non-working days (YYYY-MM-DD) besides the week mask's."""

    def model_post_init(self, _context: Any) -> None:
        try:
            np.busday_offset("2024-01-01", 0, roll="forward", weekmask=self.weekmask, holidays=list(self.holidays))
        except ValueError as exc:
            raise ValueError(f"weekmask / holidays: {exc}") from None

    def for_line(self, line: str) -> LineCosts:
        return self.lines.get(line, self.default)


def load_cost_model(path: str | Path | None) -> CostModel:
    """Defaults, overridden by a YAML file; a line under ``lines:`` starts from ``default`` and
    overrides what it names. Errors name the key."""
    if path is None:
        return CostModel()
    path = Path(path)
    data = read_yaml(path, "cost model")
    default = _validated(path, "default", _merge(LineCosts().model_dump(), data.get("default") or {}))
    lines = {
        str(line): _validated(path, f"lines.{line}", _merge(default.model_dump(), override or {}))
        for line, override in (data.get("lines") or {}).items()
    }
    rest = {k: v for k, v in data.items() if k not in ("default", "lines")}
    try:
        return CostModel.model_validate({**rest, "default": default, "lines": lines})
    except ValidationError as exc:
        raise ConfigError(f"cost model {path}: {invalid(exc)}") from None


def _validated(path: Path, prefix: str, values: dict) -> LineCosts:
    try:
        return LineCosts.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"cost model {path}: {prefix}.{invalid(exc)}") from None


def _merge(base: Mapping, override: Mapping) -> dict:
    """``base`` with ``override``'s keys, mappings merged key by key."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
