"""What the service holds while it runs, and the scoring of live claims.

A live claim is scored from its online features (the claim plus the history rows that can
influence it, through the same ``build_features`` as training), then its decision is written to the
decision log (committed before the answer leaves) and the claim is appended to the history store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from features import catalog
from features.config import Settings, load_settings
from features.history_store import HistoryStore
from features.online import online_features
from serving.decision_log import Decision, DecisionLog, input_hash
from serving.scorer import Scorer


@dataclass
class ServiceState:
    settings: Settings
    scorer: Scorer
    history: HistoryStore
    log: DecisionLog

    @classmethod
    def load(cls, settings: Settings | None = None) -> "ServiceState":
        settings = settings or load_settings().ensure_dirs()
        return cls(settings, Scorer.from_registry(settings), HistoryStore(settings.history_url),
                   DecisionLog(settings.decision_log_url))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # history reads and appends of concurrent requests stay ordered

    @property
    def policy_version(self) -> str:
        meta = next(iter(self.scorer.bundles.values())).metadata
        return f"{self.scorer.policy.version}-{str(meta.get('run_id', ''))[:8]}"

    def score(self, claims: pd.DataFrame, payloads: list[dict], key_id: str) -> list[dict[str, Any]]:
        """Answers for live claims, in order; every answer is in the decision log before it returns."""
        with self._lock:
            table = online_features(self.history, claims, self.scorer.features, self.scorer.extras)
            result = self.scorer.score_features(table)
            scored_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            versions = {**self.scorer.versions, "policy": self.policy_version}
            answers, decisions = [], []
            for i, claim_id in enumerate(claims["claim_id"]):
                scores = {task: float(result.scores[task][i]) for task in result.scores}
                reasons = {task: result.reasons[task][i] for task in result.reasons}
                answers.append({
                    "claim_id": claim_id,
                    "fraud_score": scores.get("fraud"), "fast_track_score": scores.get("fast_track"),
                    "route": str(result.routes[i]), "rules": result.rules[i], "reasons": reasons,
                    "model_versions": dict(self.scorer.versions), "policy_version": self.policy_version,
                    "scored_at": scored_at,
                })
                features = {k: _plain(v) for k, v in table.iloc[i].items()}
                decisions.append(Decision(claim_id, input_hash(payloads[i]), str(result.routes[i]), scores, features,
                                          result.rules[i], reasons, versions, key_id, scored_at))
            self.log.write(decisions)
            self.history.append(claims)
        return answers

    def explain(self, claims: pd.DataFrame) -> list[dict[str, Any]]:
        """Every feature's contribution (log-odds) for both models, with base values."""
        with self._lock:
            table = online_features(self.history, claims, self.scorer.features, self.scorer.extras)
        out = []
        for i, claim_id in enumerate(claims["claim_id"]):
            models = {}
            for task, bundle in self.scorer.bundles.items():
                matrix = bundle.encoder.transform(table.iloc[[i]])
                contrib = bundle.booster.predict(matrix, pred_contrib=True)[0]
                raw = float(bundle.booster.predict(matrix, raw_score=True)[0])
                models[task] = {
                    "base_value": float(contrib[-1]), "raw_score": raw,
                    "score": float(bundle.predict(matrix)[0]),
                    "contributions": [
                        {"feature": name, "value": _plain(table.iloc[i][name]), "contribution": float(c),
                         "text": catalog.BY_NAME[name].explain(_nan(table.iloc[i][name])) if name in catalog.BY_NAME else name}
                        for name, c in zip(bundle.features, contrib[:-1])],
                }
            out.append({"claim_id": claim_id, "models": models})
        return out

    def model_info(self) -> dict[str, Any]:
        models = {}
        for task, b in self.scorer.bundles.items():
            models[task] = {"name": f"claimscore-{task.replace('_', '-')}", "version": self.scorer.versions[task],
                            "label": b.label, "periods": b.metadata.get("periods"),
                            "test_metrics": b.metadata.get("test_metrics"), "features": list(b.features)}
        return {"models": models, "policy_version": self.policy_version, "policy": self.scorer.policy.to_dict()}


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _nan(v: Any) -> Any:
    return float("nan") if _plain(v) is None else v
