"""One training run: validate -> features -> time split -> fraud and fast-track models -> routing
policy -> evaluation on the latest period -> MLflow run, registered challengers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import available_features, build_features
from features.config import Settings
from features.data.sources import load_claims
from features.data.validation import validate_claims
from features.schema import LABELS
from monitoring.metrics import binary_metrics, lift_table, routing_kpis, slice_metrics
from serving.model.bundle import ModelBundle
from serving.model.registry import load_bundle
from serving.model.routing import RoutingPolicy
from training import registry
from training.config import TrainingConfig
from training.fit import fit_model
from training.routing import choose_policy, usable_rules
from training.split import TimeSplit, time_split
from training.tune import tune

STAGES = ("validate", "features", "fraud model", "fast-track model", "routing", "log to MLflow")


@dataclass
class TrainResult:
    run_id: str
    models: dict[str, registry.RegisteredModel]
    skipped: dict[str, str]
    metrics: dict[str, float]
    policy: RoutingPolicy
    periods: dict[str, str]
    bundles: dict[str, ModelBundle] = field(default_factory=dict)


def fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of the table's content (order included): which data a model saw."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def train(
    data: str | None,
    source: str,
    settings: Settings,
    cfg: TrainingConfig,
    on_stage: Callable[[str], None] = lambda _: None,
    tune_trials: int = 0,
) -> TrainResult:
    loaded = load_claims(data, source, settings)
    frame = loaded.frame
    check = validate_claims(
        frame,
        loaded.type_problems,
        report_dir=settings.reports_dir,
        name=f"train-{source.replace(':', '_').replace('/', '_')}",
        null_rates=loaded.null_rates,
    )
    check.raise_for_failure()
    on_stage(STAGES[0])
    feats = available_features(frame, loaded.extras)
    table = build_features(frame, feats, loaded.extras)
    usable_rules(cfg.routing, table.columns)  # a rule naming no feature at all fails now, not after fitting
    split = time_split(frame["report_date"], cfg.split)
    on_stage(STAGES[1])

    bundles, skipped, scores, metrics, tables = {}, {}, {}, {}, {}
    periods = split.periods()
    for task, label in LABELS.items():
        y = frame[label].astype("float64").to_numpy()
        reason = _why_not(y, split, cfg.min_positives)
        if reason:
            skipped[task] = f"{label}: {reason}"
        else:
            lab = ~np.isnan(y)
            tr, va = split.train & lab, split.valid & lab

            def fit(c: TrainingConfig, task=task, label=label, y=y, tr=tr, va=va) -> ModelBundle:
                return fit_model(
                    task,
                    label,
                    feats,
                    table[tr],
                    y[tr],
                    table[va],
                    y[va],
                    c,
                    {
                        "source": source,
                        "periods": periods,
                        "features": [f.name for f in feats],
                        "extras": {k: {"type": v.type, "description": v.description} for k, v in loaded.extras.items()},
                    },
                )

            if tune_trials:

                def on_validation(b: ModelBundle, y=y, va=va) -> float:
                    return binary_metrics(y[va], b.predict(b.encoder.transform(table[va])), 0.03)["average_precision"]

                bundle, trials = tune(tune_trials, cfg, fit, on_validation)
                tables[f"{task}_tuning.csv"] = pd.DataFrame(trials)
            else:
                bundle = fit(cfg)
            encoded = bundle.encoder.transform(table)
            p = bundle.predict(encoded)
            scores[task] = p
            test = split.test & lab
            m = binary_metrics(y[test], p[test], cfg.routing.siu_capacity)
            metrics.update({f"{task}.test.{k}": v for k, v in m.items()})
            mv = binary_metrics(y[split.valid & lab], p[split.valid & lab], cfg.routing.siu_capacity)
            metrics.update({f"{task}.valid.{k}": v for k, v in mv.items()})
            tables[f"{task}_lift.csv"] = lift_table(y[test], p[test])
            tables[f"{task}_slices.csv"] = slice_metrics(frame[test], y[test], p[test], cfg.routing.siu_capacity)
            tables[f"{task}_importance.csv"] = _importance(bundle)
            bundle.metadata["test_metrics"] = m
            bundles[task] = bundle
        on_stage(STAGES[2] if task == "fraud" else STAGES[3])
    if not bundles:
        raise TrainingRefused("no model could be trained: " + "; ".join(skipped.values()))

    y_fraud = frame["fraud_confirmed"].astype("float64").fillna(0).to_numpy() if "fraud" in bundles else None
    policy = choose_policy(
        cfg.routing,
        table[split.valid],
        _part(scores.get("fraud"), split.valid),
        _part(scores.get("fast_track"), split.valid),
        _part(y_fraud, split.valid),
    )
    kpis = routing_kpis(
        policy,
        table[split.test],
        _part(scores.get("fraud"), split.test),
        _part(scores.get("fast_track"), split.test),
        _part(y_fraud, split.test),
    )
    policy = dataclasses.replace(policy, expected_kpis=kpis)
    metrics.update({f"routing.test.{k}": v for k, v in kpis.items()})
    on_stage(STAGES[4])

    run_id, models = _log_run(
        settings,
        cfg,
        source,
        data,
        frame,
        table,
        split,
        feats,
        bundles,
        skipped,
        metrics,
        tables,
        policy,
        check.report_path,
    )
    on_stage(STAGES[5])
    return TrainResult(run_id, models, skipped, metrics, policy, periods, bundles)


class TrainingRefused(registry.RegistryError):
    """Nothing to train on (no label with enough positives in every period)."""


def _why_not(y: np.ndarray, split: TimeSplit, min_positives: int) -> str | None:
    if np.isnan(y).all():
        return "this source has no such label"
    for name, mask in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        lab = mask & ~np.isnan(y)
        pos = int(np.nansum(y[lab]))
        if pos < min_positives or pos == lab.sum():
            return (
                f"{pos} positive(s) of {int(lab.sum())} labelled claims in the {name} period "
                f"(needs {min_positives} and some negatives)"
            )
    return None


def _part(values: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[mask]


def _importance(bundle: ModelBundle) -> pd.DataFrame:
    gain = bundle.booster.feature_importance(importance_type="gain")
    return (
        pd.DataFrame({"feature": bundle.features, "gain": gain})
        .sort_values("gain", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def _champion_on_test(task: str, table: pd.DataFrame, y: np.ndarray, mask: np.ndarray, capacity: float) -> dict:
    """The current champion's metrics on this run's test period (for a fair promotion decision)."""
    if registry.version_for(task, registry.CHAMPION) is None:
        return {}
    champion = load_bundle(task, registry.CHAMPION)
    if not set(champion.features) <= set(table.columns):
        return {}
    p = champion.predict(champion.encoder.transform(table[mask]))
    return binary_metrics(y[mask], p, capacity)


def _log_run(
    settings, cfg, source, data, frame, table, split, feats, bundles, skipped, metrics, tables, policy, report_path
) -> tuple[str, dict]:
    import mlflow

    from training.card import model_card
    from training.plots import write_plots

    models = {}
    with registry.start_run(settings) as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for task, bundle in bundles.items():
            y = frame[bundle.label].astype("float64").to_numpy()
            lab = split.test & ~np.isnan(y)
            champ = _champion_on_test(task, table, y, lab, cfg.routing.siu_capacity)
            metrics.update({f"{task}.champion_on_test.{k}": v for k, v in champ.items()})
        mlflow.log_params(
            {
                "source": source,
                "data": str(data),
                "rows": len(frame),
                "features": len(feats),
                "data_fingerprint": fingerprint(frame),
                "seed": cfg.seed,
                **{f"period.{k}": v for k, v in split.periods().items()},
                "skipped": "; ".join(skipped.values()) or "none",
            }
        )
        mlflow.log_dict(cfg.model_dump(mode="json"), "training_config.json")
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        for name, tbl in tables.items():
            path = tmp / name
            tbl.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "evaluation")
        mlflow.log_artifact(str(report_path), "validation")
        policy_path = tmp / "routing_policy.json"
        policy_path.write_text(json.dumps(policy.to_dict(), indent=2))
        mlflow.log_artifact(str(policy_path))
        for plot in write_plots(tmp / "plots", frame, table, split, bundles, policy):
            mlflow.log_artifact(str(plot), "plots")
        card = tmp / "model_card.md"
        card.write_text(model_card(source, frame, split, feats, bundles, skipped, metrics, tables, policy))
        mlflow.log_artifact(str(card))
        for task, bundle in bundles.items():
            bundle.metadata.update({"run_id": run.info.run_id, "policy": policy.to_dict()})
            folder = bundle.save(tmp / f"bundle-{task}")
            example = table.loc[split.test, list(bundle.features)].head(3)
            models[task] = registry.log_bundle(task, folder, example)
    return run.info.run_id, models
