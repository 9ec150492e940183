"""MLflow tracking and the model registry: where runs, models and aliases live.

Models are registered as ``claimscore-fraud`` and ``claimscore-fast-track``. A training run's models
get the alias ``challenger``; ``claimscore promote`` moves ``champion`` to them when they beat the
champion on the challenger's test period by the configured margin (or there is no champion).
Who promoted and why are recorded as model-version tags.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from features.config import Settings
from features.errors import ClaimScoreError

MODEL_NAMES = {"fraud": "claimscore-fraud", "fast_track": "claimscore-fast-track"}
EXPERIMENT = "claimscore"
CHAMPION, CHALLENGER = "champion", "challenger"
PIP_REQUIREMENTS = ["lightgbm==4.7.0", "scikit-learn==1.9.1", "pandas==3.1.1", "numpy==2.4.6", "mlflow==3.17.2"]


class RegistryError(ClaimScoreError):
    """The registry lacks what was asked for (no champion, no challenger...)."""


class PromotionRefused(ClaimScoreError):
    exit_code = 1


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store; return the experiment id (artifacts under ``home``)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(EXPERIMENT, artifact_location=Path(settings.artifacts_dir).resolve().as_uri())


def start_run(settings: Settings, **kwargs):
    """An MLflow run in the ClaimScore experiment; inside ``mlflow run`` (MLFLOW_RUN_ID set), the
    project's own run."""
    import mlflow

    experiment = configure(settings)
    if os.environ.get("MLFLOW_RUN_ID"):
        return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"], **kwargs)
    return mlflow.start_run(experiment_id=experiment, **kwargs)


@dataclass(frozen=True)
class RegisteredModel:
    task: str
    name: str
    version: str
    run_id: str
    tags: dict


def version_for(task: str, alias: str) -> RegisteredModel | None:
    """The model version behind ``alias`` for ``task``, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = MODEL_NAMES[task]
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredModel(task, name, mv.version, mv.run_id, dict(mv.tags or {}))


def load_bundle(task: str, alias: str = CHAMPION):
    """The :class:`ModelBundle` behind ``alias`` (loaded through MLflow's pyfunc, unwrapped)."""
    import mlflow.pyfunc

    if version_for(task, alias) is None:
        raise RegistryError(f"no {alias} for {MODEL_NAMES[task]}: train and promote a model first "
                            f"(claimscore train ..., claimscore promote)")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAMES[task]}@{alias}")
    return model.unwrap_python_model().bundle


def log_bundle(task: str, bundle_dir: Path, input_example) -> RegisteredModel:
    """Log a bundle folder as a pyfunc model in the active run, register it, alias it challenger."""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    from features.pyfunc import BundleModel

    name = MODEL_NAMES[task]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # registry chatter
        info = mlflow.pyfunc.log_model(name=f"{task}-model", python_model=BundleModel(),
                                       artifacts={"bundle": str(bundle_dir)}, input_example=input_example,
                                       registered_model_name=name, pip_requirements=PIP_REQUIREMENTS)
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    run_id = mlflow.active_run().info.run_id
    return RegisteredModel(task, name, version, run_id, {})


def promote(metric: str, margin: float, who: str, why: str) -> list[dict]:
    """Move ``champion`` to the challengers if each beats its champion on the challenger's test period.

    Returns the comparison rows; raises :class:`PromotionRefused` (with the table) otherwise. Both
    models of a training run move together, so the routing policy they carry stays consistent.
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
        metrics = mlflow.get_run(challenger.run_id).data.metrics
        new = metrics.get(f"{task}.test.{metric}")
        old = metrics.get(f"{task}.champion_on_test.{metric}") if champion else None
        if champion and champion.version == challenger.version:
            verdict = "already champion"
        elif champion is None:
            verdict = "promote (no champion)"
        elif old is None or new is None:
            verdict, ok = "refuse (champion not evaluated on this test period)", False
        elif new > old + margin:
            verdict = "promote"
        else:
            verdict, ok = f"refuse (needs {old + margin:.4f})", False
        rows.append({"model": MODEL_NAMES[task], "challenger": challenger.version,
                     "champion": champion.version if champion else "-", "metric": metric,
                     "challenger_value": new, "champion_value": old, "verdict": verdict})
    if not ok:
        raise PromotionRefused("promotion refused:\n" + format_table(rows))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for task, row in zip(tasks, rows):
        if row["verdict"] == "already champion":
            continue
        name, version = MODEL_NAMES[task], row["challenger"]
        client.set_registered_model_alias(name, CHAMPION, version)
        for key, value in (("promoted_by", who), ("promoted_reason", why), ("promoted_at", stamp),
                           ("replaced_version", row["champion"])):
            client.set_model_version_tag(name, version, key, value)
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["model", "challenger", "champion", "metric", "challenger_value", "champion_value", "verdict"]

    def cell(v):
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    widths = {c: max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(cell(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
