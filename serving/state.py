"""What the service holds while it runs, and the scoring of live claims.

A live claim is scored from its online features (the claim plus the history rows that can
influence it, through the same ``build_features`` as training), then its decision is written to the
decision log (committed before the answer leaves) and the claim is appended to the history store;
a claim routed to a queue (``siu_referral``, ``specialist``) then opens a case for the investigators
(:mod:`serving.casework`). The history is read from memory
(:class:`features.store.index.HistoryIndex`, which follows the store's change feed, so claims
loaded and outcomes recorded by other processes are seen at the next batch).
The whole path runs on arrays (:mod:`features.columns`), and claims that arrive together are scored
together (:mod:`serving.batching`).

Personal identifiers (phone, address, payee account) are hashed (:mod:`features.identity`, with the
same secret and rules as the history was loaded with) as the claims are submitted, before they are
queued, scored, logged or stored: the history store, the decision log (its input hash is of the
request with those fields hashed) and the answers never hold the values as sent.

A claim that does not send a field the champion uses is refused before it is queued
(:meth:`ServiceState.check_inputs`, 422 naming the field) unless its ``allow_missing`` option lists
the field; the fields a claim is scored without are then in its answer (``scored_without``).
"""

from __future__ import annotations

import functools
import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features import catalog, columns
from features.config import Settings, load_settings
from features.errors import ClaimScoreError
from features.identity import Identity, require_real_secret
from features.sql import checkpoint_in_background
from features.store.history import HistoryStore
from features.store.index import HistoryIndex
from features.store.online import online_features
from serving.batching import Batcher, Job
from serving.casework import Casework
from serving.decision_log import Decision, DecisionLog, input_hash
from serving.model.scorer import MissingInputs, Scorer
from serving.network import claim_network
from serving.request import ALLOW_MISSING, RequestError
from serving.sessions import Sessions

WRITE_FAILURE_S = 10.0
"""How long a failed decision-log write keeps ``/readyz`` at 503 (each failed write restarts it)."""


@dataclass
class ServiceState:
    settings: Settings
    scorer: Scorer
    history: HistoryIndex
    log: DecisionLog
    casework: Casework | None = None
    """Cases for referred claims, dispositions and outcomes (None: no cases are opened)."""
    shadow: Scorer | None = None
    """What decides in the champion's shadow (``Settings.shadow``): logged, never answered."""

    @classmethod
    def load(cls, settings: Settings | None = None) -> ServiceState:
        settings = settings or load_settings().ensure_dirs()
        require_real_secret(settings)
        store, log = HistoryStore(settings.history_url), DecisionLog(settings.decision_log_url)
        for engine in (store.engine, log.engine):  # every batch commits to both
            checkpoint_in_background(engine)
        casework = Casework.from_settings(settings, store, log)
        scorer = Scorer.from_registry(settings)
        state = cls(settings, scorer, HistoryIndex(store), log, casework, shadow_scorer(settings, scorer))
        # the models and the history index are millions of long-lived objects: keep them out of
        # the garbage collector's full passes, which otherwise stall a batch now and then
        gc.collect()
        gc.freeze()
        return state

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # history reads and appends of concurrent requests stay ordered
        self._batcher = Batcher(self._score_jobs)
        self.identity = Identity.from_settings(self.settings, warn=False)
        self.observers: list[Callable[[list[dict], float], None]] = []
        """Called with every batch's answers and the seconds it took (the service's metrics)."""
        self.sessions = (
            Sessions(self.casework.cases.engine, self.settings.session_hours) if self.casework is not None else None
        )
        """The pages' sign-in sessions, kept beside the cases."""

    def close(self) -> None:
        self._batcher.close()

    def ready(self) -> list[str]:
        """The stores the service needs that do not answer now (empty: ready). Each is asked for
        one row of its main table: the decision log, the history store, the case store. A decision
        log whose last write failed less than :data:`WRITE_FAILURE_S` ago is not ready either (it
        may answer reads with its disk full); after that the next claim's write tells again."""
        import sqlalchemy as sa

        down = []
        checks = [
            ("decision log", self.log.engine, self.log.table),
            ("history store", self.history.store.engine, self.history.store.table),
        ]
        if self.casework is not None:
            checks.append(("case store", self.casework.cases.engine, self.casework.cases.cases))
        for name, engine, table in checks:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).all()
            except sa.exc.SQLAlchemyError:
                down.append(name)
        failed = self.log.failed_at
        if "decision log" not in down and failed is not None and time.monotonic() - failed < WRITE_FAILURE_S:
            down.append("decision log (writes fail)")
        return down

    @functools.cached_property
    def features(self) -> list[str]:
        """The features built for a live claim: the champion's, and the shadow's (worked out once:
        neither changes while the service runs)."""
        names = list(self.scorer.features)
        if self.shadow is not None:
            names += [f for f in self.shadow.features if f not in names]
        return names

    @property
    def policy_version(self) -> str:
        meta = next(iter(self.scorer.bundles.values())).metadata
        return f"{self.scorer.policy.version}-{str(meta.get('run_id', ''))[:8]}"

    def check_inputs(self, payloads: list[dict[str, Any]], prefix: str = "") -> list[list[str]]:
        """For each claim (a validated request body), the inputs it is scored without: those it does
        not send and its ``allow_missing`` lists (``a|b|c`` where any one of them would do). Raise
        :class:`serving.request.RequestError` (422) naming every input a claim lacks otherwise; in a
        batch (``prefix="claims"``) the fields are named ``claims[i].field``.

        A key the client sent counts as sent even when its value is ``null`` (unknown, said so)."""
        out: list[list[str]] = []
        problems: list[dict[str, str]] = []
        for i, payload in enumerate(payloads):
            try:
                out.append(sorted(self.scorer.check_inputs(payload.keys(), payload.get(ALLOW_MISSING) or ())))
            except MissingInputs as exc:
                where = f"{prefix}[{i}]." if prefix else ""
                problems += [{"field": where + key, "problem": _missing(key, f)} for key, f in exc.missing.items()]
        if problems:
            raise RequestError(problems)
        return out

    def submit(self, records: list[dict[str, Any]], payloads: list[Any], key_id: str) -> Future:
        """Queue live claims (validated records, :func:`serving.request.parse_records`) to be scored
        with whatever else is waiting; the future resolves to their answers, in order, once every
        one of them is in the decision log. Personal identifiers are hashed first."""
        records = [self.identity.hash_record(r) for r in records]
        payloads = [self.identity.hash_payload(p) for p in payloads]
        return self._batcher.submit(records, payloads, key_id)

    def score(self, records: list[dict[str, Any]], payloads: list[Any], key_id: str) -> list[dict[str, Any]]:
        """:meth:`submit` and wait for the answers."""
        return self.submit(records, payloads, key_id).result()

    def _score_jobs(self, jobs: list[Job]) -> list[list[dict[str, Any]]]:
        records = [r for job in jobs for r in job.records]
        payloads = [p for job in jobs for p in job.payloads]
        keys = [job.key_id for job in jobs for _ in job.records]
        started = time.perf_counter()
        answers = self._score(records, payloads, keys)
        for observe in self.observers:
            observe(answers, time.perf_counter() - started)
        out, start = [], 0
        for job in jobs:
            out.append(answers[start : start + len(job.records)])
            start += len(job.records)
        return out

    def _score(self, records: list[dict[str, Any]], payloads: list[Any], keys: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            claims = columns.from_records(records)
            self.history.refresh()
            table = online_features(self.history, claims, self.features, self.scorer.extras)
            result = self.scorer.score_features(table)
            shadow = self.shadow.score_features(table, reasons=False) if self.shadow is not None else None
            scored_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            versions = {**self.scorer.versions, "policy": self.policy_version}
            names = list(table)
            answers, decisions = [], []
            for i, features in enumerate(zip(*(_plain_column(column) for column in table.values()))):
                claim_id = records[i]["claim_id"]
                scores = {task: float(result.scores[task][i]) for task in result.scores}
                reasons = {task: result.reasons[task][i] for task in result.reasons}
                route = str(result.routes[i])
                answers.append(
                    {
                        "claim_id": claim_id,
                        "fraud_score": scores.get("fraud"),
                        "fast_track_score": scores.get("fast_track"),
                        "route": route,
                        "rules": result.rules[i],
                        "reasons": reasons,
                        "model_versions": dict(self.scorer.versions),
                        "policy_version": self.policy_version,
                        "scored_at": scored_at,
                    }
                )
                decisions.append(
                    Decision(
                        claim_id,
                        input_hash(payloads[i]),
                        route,
                        scores,
                        dict(zip(names, features)),
                        result.rules[i],
                        reasons,
                        versions,
                        keys[i],
                        scored_at,
                        _shadow_of(self.shadow, shadow, i),
                    )
                )
            self.log.write(decisions)
            self.history.append(claims)
            if self.casework is not None:
                self.casework.refer(decisions, records)
        return answers

    def explain(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every feature's contribution (log-odds) for both models, with base values."""
        records = [self.identity.hash_record(r) for r in records]
        with self._lock:
            self.history.refresh()
            table = online_features(
                self.history, columns.from_records(records), self.scorer.features, self.scorer.extras
            )
        return [{"claim_id": r["claim_id"], "models": models} for r, models in zip(records, self._contributions(table))]

    def claim_network(self, claim_id: str) -> dict[str, Any]:
        """The claim's linked parties within two hops (:func:`serving.network.claim_network`), read
        from the history as it stands between two batches."""
        with self._lock:
            self.history.refresh()
            return claim_network(self.history, claim_id)

    def explain_features(self, features: dict[str, Any]) -> dict[str, Any]:
        """The explanation of a decision as it was made: every feature's contribution to both scores
        (as :meth:`explain` answers ``models``) from the feature values the decision log holds,
        whatever the history holds now. Features a model uses that the decision did not record
        count as missing."""
        categorical = {name for b in self.scorer.bundles.values() for name in b.encoder.categories}
        table = {}
        for name in self.scorer.features:
            value = features.get(name)
            if name in categorical:
                table[name] = np.array([value], dtype=object)
            else:
                table[name] = np.array([np.nan if value is None else value], dtype=np.float64)
        return self._contributions(table)[0]

    def _contributions(self, table: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        n = len(next(iter(table.values()))) if table else 0
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for task, bundle in self.scorer.bundles.items():
            matrix = bundle.encoder.transform(table)
            contrib = bundle.explainer.contributions(matrix, stable=True)
            raw = bundle.predict_log_odds(matrix)
            scores = bundle.predict(matrix)
            for i, answer in enumerate(out):
                answer[task] = {
                    "base_value": bundle.explainer.expected_value,
                    "raw_score": float(raw[i]),
                    "score": float(scores[i]),
                    "contributions": [
                        {
                            "feature": name,
                            "value": _plain(table[name][i]),
                            "contribution": float(c),
                            "text": catalog.BY_NAME[name].explain(_nan(table[name][i]))
                            if name in catalog.BY_NAME
                            else name,
                        }
                        for name, c in zip(bundle.features, contrib[i])
                    ],
                }
        return out

    def model_info(self) -> dict[str, Any]:
        models = {}
        for task, b in self.scorer.bundles.items():
            models[task] = {
                "name": f"claimscore-{task.replace('_', '-')}",
                "version": self.scorer.versions[task],
                "label": b.label,
                "periods": b.metadata.get("periods"),
                "test_metrics": b.metadata.get("test_metrics"),
                "features": list(b.features),
            }
        return {"models": models, "policy_version": self.policy_version, "policy": self.scorer.policy.to_dict()}


def shadow_scorer(settings: Settings, champion: Scorer) -> Scorer | None:
    """The scorer ``Settings.shadow`` names: the registry's challenger, or the champion's models
    under a policy file; None when it names nothing. Refused (at start-up) when it cannot be had."""
    from pathlib import Path

    from serving.model.routing import PolicyError, load_policy

    if not settings.shadow:
        return None
    if settings.shadow == "challenger":
        return Scorer.from_registry(settings, alias="challenger")
    try:
        policy = load_policy(settings.shadow)
    except PolicyError as exc:
        raise ClaimScoreError(
            f"shadow: '{settings.shadow}' is neither 'challenger' nor a routing policy ({exc})"
        ) from None
    policy.check(champion.features)
    return Scorer(champion.bundles, policy, {**champion.versions, "policy": Path(settings.shadow).name})


def _shadow_of(scorer: Scorer | None, result: Any, i: int) -> dict[str, Any]:
    """The shadow's decision for claim ``i`` (empty without a shadow)."""
    if scorer is None:
        return {}
    return {
        "route": str(result.routes[i]),
        "scores": {task: float(result.scores[task][i]) for task in result.scores},
        "rules": list(result.rules[i]),
        "version": ", ".join(f"{k} {v}" for k, v in scorer.versions.items()),
    }


def _missing(key: str, features: list[str]) -> str:
    """The problem with a claim lacking input ``key`` (a field, or ``a|b|c``: any one of them)."""
    used_by = ", ".join(features)
    if "|" not in key:
        return f"the model uses this field (for {used_by}); send it, or list it in {ALLOW_MISSING} to score without it"
    return (
        f"the model uses one of {', '.join(key.split('|'))} (for {used_by}); send one, or list one of them "
        f"in {ALLOW_MISSING} to score without them"
    )


def _plain_column(column: np.ndarray) -> list:
    """A feature column as plain Python values (missing: None), as :func:`_plain` makes them one by one."""
    if column.dtype.kind in "iub":
        return column.tolist()
    if column.dtype.kind == "f":
        return [None if v != v else v for v in column.tolist()]
    return [_plain(v) for v in column]


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _nan(v: Any) -> Any:
    return float("nan") if _plain(v) is None else v
