"""The model registry's write side: runs, registered versions, the challenger alias and promotion.

A training run's models get the alias ``challenger``; ``claimscore promote`` moves ``champion`` to them
when they beat the champion on the challenger's test period by the configured margin (or there is no
champion). Who promoted and why are recorded as model-version tags. Reading models back is
:mod:`serving.model.registry`'s.
"""

from __future__ import annotations

import contextlib
import io
import os
from datetime import UTC, datetime
from pathlib import Path

from features.config import Settings
from features.errors import ClaimScoreError
from serving.model.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    RegisteredModel,
    RegistryError,
    configure,
    version_for,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MODEL_NAMES",
    "RegisteredModel",
    "RegistryError",
    "PromotionRefused",
    "configure",
    "version_for",
    "start_run",
    "log_bundle",
    "promote",
    "format_table",
]

PIP_REQUIREMENTS = ["lightgbm==4.7.0", "scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6", "mlflow==3.17.2"]


FAIRNESS_ARTIFACT = "monitoring/fairness.json"
POISONING_ARTIFACT = "monitoring/poisoning.json"
"""A training run's poisoning findings against the champion (:mod:`training.poisoning`)."""
"""Where a training run records its routes' fairness and the champion's (training/pipeline.py)."""


class PromotionRefused(ClaimScoreError):
    exit_code = 1


def start_run(settings: Settings, **kwargs):
    """An MLflow run in the ClaimScore experiment; inside ``mlflow run`` (MLFLOW_RUN_ID set), the
    project's own run."""
    import mlflow

    experiment = configure(settings)
    if os.environ.get("MLFLOW_RUN_ID"):
        return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"], **kwargs)
    return mlflow.start_run(experiment_id=experiment, **kwargs)


def log_bundle(task: str, bundle_dir: Path, input_example, alias: str | None = CHALLENGER) -> RegisteredModel:
    """Log a bundle folder as a pyfunc model in the active run, register it, give it ``alias``."""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    from serving.model.pyfunc import BundleModel

    name = MODEL_NAMES[task]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # registry chatter
        info = mlflow.pyfunc.log_model(
            name=f"{task}-model",
            python_model=BundleModel(),
            artifacts={"bundle": str(bundle_dir)},
            input_example=input_example,
            registered_model_name=name,
            pip_requirements=PIP_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    if alias:
        client.set_registered_model_alias(name, alias, version)
    run_id = mlflow.active_run().info.run_id
    return RegisteredModel(task, name, version, run_id, {})


def promote(
    metric: str,
    margin: float,
    who: str,
    why: str,
    fairness_margin: float | None = None,
    fairness_min_ratio: float = 0.8,
    override: str | None = None,
) -> list[dict]:
    """Move ``champion`` to the challengers if each beats its champion on the same claims.

    The training run scored both on the part of its test period the champion never learnt from
    (``{task}.compare.*``; see ``training.pipeline._comparison``): the challenger by its honest,
    pre-refit model. Each row names the period and claims compared and why. With ``fairness_margin``,
    the challengers' routes must also be as fair as the champion's on the same test claims: a group
    whose ratio to the most favoured group fell by more than the margin, below
    ``fairness_min_ratio``, is named, with both ratios
    (:func:`monitoring.fairness.promotion_check`), and the promotion refused. Returns the comparison
    rows; raises :class:`PromotionRefused` (with the table) otherwise. Both models of a training run
    move together, so the routing policy they carry stays consistent.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    rows, ok = [], True
    tasks = [t for t in MODEL_NAMES if version_for(t, CHALLENGER) is not None]
    if not tasks:
        raise RegistryError("no challenger to promote: run claimscore train first")
    for task in tasks:
        challenger = version_for(task, CHALLENGER)
        champion = version_for(task, CHAMPION)
        run = mlflow.get_run(challenger.run_id).data
        new, old, compared, note = _compared(task, metric, run.metrics, run.params)
        judged = run.params.get(f"{task}.compare.champion_version")
        if champion and champion.version == challenger.version:
            verdict, compared, note = "already champion", "-", ""
        elif champion is None:
            verdict, compared, note = "promote (no champion)", "-", ""
        elif judged is not None and judged != str(champion.version):
            verdict = f"refuse (run compared champion v{judged}, champion is now v{champion.version}: retrain)"
            ok = False
        elif old is None or new is None:
            verdict, ok = "refuse (champion not evaluated on this test period)", False
        elif new > old + margin:
            verdict = "promote"
        else:
            verdict, ok = f"refuse (needs {old + margin:.4f})", False
        rows.append(
            {
                "model": MODEL_NAMES[task],
                "challenger": challenger.version,
                "champion": champion.version if champion else "-",
                "metric": metric,
                "challenger_value": new,
                "champion_value": old,
                "compared_on": compared,
                "verdict": verdict,
                "note": note,
            }
        )
    run_id = version_for(tasks[0], CHALLENGER).run_id
    objections = _fairness_objections(run_id, fairness_margin, fairness_min_ratio)
    poisoned = _recorded(run_id, POISONING_ARTIFACT).get("findings", [])
    if poisoned and not override and any(r["verdict"] not in ("already champion",) for r in rows):
        ok = False
        for r in rows:
            r["verdict"] = "refuse (data moved)" if r["verdict"].startswith("promote") else r["verdict"]
        rows[0]["note"] = "; ".join(
            filter(None, [rows[0]["note"], "data or behaviour moved: " + "; ".join(poisoned) + " (--override WHY)"])
        )
    if objections and any(r["verdict"] not in ("already champion", "promote (no champion)") for r in rows):
        ok = False
        for r in rows:
            r["verdict"] = "refuse (fairness)" if r["verdict"] == "promote" else r["verdict"]
        rows[0]["note"] = "; ".join(filter(None, [rows[0]["note"], "fairness: " + "; ".join(objections)]))
    if not ok:
        raise PromotionRefused("promotion refused:\n" + format_table(rows))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for task, row in zip(tasks, rows):
        if row["verdict"] == "already champion":
            continue
        name, version = MODEL_NAMES[task], row["challenger"]
        client.set_registered_model_alias(name, CHAMPION, version)
        for key, value in (
            ("promoted_by", who),
            ("promoted_reason", why),
            ("promoted_at", stamp),
            ("replaced_version", row["champion"]),
            ("promoted_on", f"{row['metric']} on {row['compared_on']}"),
            *((("override", f"{override} (over: {'; '.join(poisoned)})"),) if override and poisoned else ()),
        ):
            client.set_model_version_tag(name, version, key, value)
    return rows


def promote_policy(settings: Settings, policy, source: str, who: str, why: str) -> list[dict]:
    """Make ``policy`` (a :class:`~serving.model.routing.RoutingPolicy`, e.g. the file
    ``claimscore backtest --optimise`` wrote) the champion's routing policy: the champion's models
    are registered again as new versions carrying it (same boosters, calibration and reference), in
    a run of their own that records the policy and where it came from, and ``champion`` moves to
    them. The models and their figures do not change, so no metric is compared: the backtest that
    chose the policy is the evidence, and ``source``, ``who`` and ``why`` are recorded with it."""
    import tempfile

    import mlflow
    from mlflow.tracking import MlflowClient

    from serving.model.registry import load_bundle

    tasks = [t for t in MODEL_NAMES if version_for(t, CHAMPION) is not None]
    if not tasks:
        raise RegistryError("no champion to give a policy to: train and promote a model first")
    bundles = {t: load_bundle(t, CHAMPION) for t in tasks}
    policy.check([f for b in bundles.values() for f in b.features])
    old = {t: version_for(t, CHAMPION).version for t in tasks}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    with start_run(settings, run_name="policy change") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"kind": "policy change", "policy_source": source})
        mlflow.log_params(
            {"policy_source": source, "by": who, "reason": why, **{f"{t}.from_version": v for t, v in old.items()}}
        )
        mlflow.log_dict(policy.to_dict(), "routing_policy.json")
        for task, bundle in bundles.items():
            bundle.metadata.update({"policy": policy.to_dict(), "run_id": run.info.run_id, "policy_source": source})
            folder = bundle.save(Path(tmp) / f"bundle-{task}")
            model = log_bundle(task, folder, None, alias=None)
            client = MlflowClient()
            client.set_registered_model_alias(model.name, CHAMPION, model.version)
            for key, value in (
                ("promoted_by", who),
                ("promoted_reason", why),
                ("promoted_at", stamp),
                ("replaced_version", old[task]),
                ("promoted_on", f"routing policy from {source} (same models as v{old[task]})"),
            ):
                client.set_model_version_tag(model.name, model.version, key, value)
            rows.append({"model": model.name, "champion": model.version, "replaced": old[task], "policy": source})
    return rows


def _recorded(run_id: str, artifact: str) -> dict:
    """A JSON artefact of a run ({} when the run has none: older runs)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")
    except (MlflowException, OSError):
        return {}


def _fairness_objections(run_id: str, margin: float | None, min_ratio: float) -> list[str]:
    """The training run's fairness comparison (its routes and the champion's on its test claims)
    as refusal lines; none without a margin, a champion, or the comparison (older runs)."""
    if margin is None:
        return []
    from monitoring.fairness import FairnessResult, promotion_check

    recorded = _recorded(run_id, FAIRNESS_ARTIFACT)
    if not recorded.get("champion"):
        return []
    challenger = FairnessResult.from_dict(recorded["challenger"]).rows
    champion = FairnessResult.from_dict(recorded["champion"]).rows
    return promotion_check(challenger, champion, margin, min_ratio)


def _compared(task: str, metric: str, metrics: dict, params: dict) -> tuple:
    """(challenger value, champion value, claims compared, note) as the training run recorded them."""
    if f"{task}.compare.challenger.{metric}" in metrics:
        return (
            metrics.get(f"{task}.compare.challenger.{metric}"),
            metrics.get(f"{task}.compare.champion.{metric}"),
            f"{params.get(f'{task}.compare.period', '?')}, {params.get(f'{task}.compare.claims', '?')}",
            params.get(f"{task}.compare.note", ""),
        )
    return (  # a run from before the comparison was recorded
        metrics.get(f"{task}.test.{metric}"),
        metrics.get(f"{task}.champion_on_test.{metric}"),
        "the challenger's whole test period",
        params.get(f"{task}.compare.note", "older run: whole test period compared; the champion may have seen it"),
    )


def promote_as_configured(cfg, who: str, why: str, override: str | None = None) -> list[dict]:
    """:func:`promote` with a training config's limits (its promotion metric and margin, its
    fairness margin and floor): what ``claimscore promote`` and ``claimscore retrain`` apply."""
    return promote(
        cfg.promotion.metric,
        cfg.promotion.margin,
        who,
        why,
        fairness_margin=cfg.fairness.promotion_margin,
        fairness_min_ratio=cfg.fairness.min_ratio,
        override=override,
    )


def format_table(rows: list[dict]) -> str:
    """The comparison as an aligned table, then one note line per model that has one."""
    cols = ["model", "challenger", "champion", "metric", "challenger_value", "champion_value", "compared_on", "verdict"]

    def cell(v):
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(cell(r.get(c)).ljust(widths[c]) for c in cols) for r in rows]
    lines += [f"{r['model']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(line.rstrip() for line in lines)
