"""The model registry's read side: where MLflow keeps the models, and the bundles behind an alias.

Models are registered as ``claimscore-fraud`` and ``claimscore-fast-track``. A training run's models
get the alias ``challenger``; ``claimscore promote`` moves ``champion`` to them. Batch scoring, the
service and monitoring read models through this module; writing them (logging, registering,
promoting) is training's (:mod:`training.registry`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from features.config import Settings
from features.errors import ClaimScoreError

MODEL_NAMES = {"fraud": "claimscore-fraud", "fast_track": "claimscore-fast-track"}
EXPERIMENT = "claimscore"
CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(ClaimScoreError):
    """The registry lacks what was asked for (no champion, no challenger...)."""


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
        raise RegistryError(
            f"no {alias} for {MODEL_NAMES[task]}: train and promote a model first "
            f"(claimscore train ..., claimscore promote)"
        )
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAMES[task]}@{alias}")
    return model.unwrap_python_model().bundle
