"""One training run: validate -> features -> time split -> fraud and fast-track models (selected on
validation, judged on test) -> refit on all matured data -> routing policy -> MLflow run, registered
challengers.

A claim without a task's label (NaN: its outcome has not arrived, e.g. a live claim in the history
store) is left out of that task's training, validation, test and refit rows, and of the fraud rates
the routing policy is judged by; it still counts as history for other claims' features and in route
shares. How many were left out is logged (``{task}.unlabelled``).

The run's ``{task}.test.*`` metrics are the honest figures of the model fitted on the train period;
the model registered is its refit (training/refit.py) unless ``refit: false``. For the promotion gate
the run also scores the current champion on the part of this run's test period the champion never
saw (``{task}.compare.*``), see :func:`_comparison`.
"""

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

from features.build import available_features
from features.config import Settings
from features.data.sources import load_claims
from features.data.validation import validate_claims
from features.schema import LABELS
from monitoring.fairness import fairness, group_columns
from monitoring.metrics import binary_metrics, lift_table, routing_kpis, slice_metrics
from monitoring.performance import estimated_metrics
from monitoring.reference import Reference, build_reference
from serving.model.bundle import ModelBundle
from serving.model.registry import load_bundle
from serving.model.routing import ROUTES, RoutingPolicy
from training import registry
from training.config import TrainingConfig
from training.fit import IN_PROCESS, Trainer, fit_model
from training.poisoning import data_profile, findings
from training.refit import refit_model
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
    """The registered models (the refits, unless refit is off)."""
    selected: dict[str, ModelBundle] = field(default_factory=dict)
    """The models fitted on the train period, whose test figures are the run's honest metrics."""
    split: TimeSplit | None = None
    config_origin: str = "given"
    notes: list[str] = field(default_factory=list)
    unlabelled: dict[str, int] = field(default_factory=dict)
    """Task -> claims without its label (outcome not recorded yet): left out of that model's
    training, validation and test rows, still history for other claims' features."""
    poisoning: list[str] = field(default_factory=list)
    """What moved beyond its limit against the champion (:mod:`training.poisoning`): promotion
    refuses the challenger while there is anything here, unless overridden."""


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
    config_origin: str = "given",
    trainer: Trainer | None = None,
) -> TrainResult:
    """Train, judge, refit and register; ``config_origin`` says where ``cfg`` came from (logged).
    ``trainer``: where features are built and boosters fitted (this process by default; on Dask,
    :class:`training.distributed.DaskTrainer`), the rest of the run is the same either way."""
    trainer = trainer or IN_PROCESS
    loaded = load_claims(data, source, settings)
    frame = loaded.frame
    check = validate_claims(
        frame,
        loaded.type_problems,
        report_dir=settings.reports_dir,
        name=f"train-{source.replace(':', '_').replace('/', '_')}",
        null_rates=loaded.null_rates,
        supplies=loaded.expected,
        absent=loaded.absent,
    )
    check.raise_for_failure()
    on_stage(STAGES[0])
    feats = available_features(frame, loaded.extras)
    table = trainer.features(frame, feats, loaded.extras)
    usable_rules(cfg.routing, table.columns)  # a rule naming no feature at all fails now, not after fitting
    ys = {task: frame[label].astype("float64").to_numpy() for task, label in LABELS.items()}
    skipped = {
        task: f"{LABELS[task]}: {why}"
        for task, y in ys.items()
        if (why := _unsupportable(y, len(frame), cfg.min_positives))
    }
    if len(skipped) == len(LABELS):
        raise TrainingRefused("no model could be trained: " + "; ".join(skipped.values()))
    trainable = {LABELS[task]: y for task, y in ys.items() if task not in skipped}
    split = time_split(frame["report_date"], cfg.split, trainable, cfg.min_positives)
    on_stage(STAGES[1])

    bundles, selected, scores, metrics, tables = {}, {}, {}, {}, {}
    periods = split.periods()
    for task, label in LABELS.items():
        y = ys[task]
        reason = skipped.get(task) or _why_not(y, split, cfg.min_positives)
        if reason:
            skipped[task] = reason if reason.startswith(label) else f"{label}: {reason}"
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
                    trainer,
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
            selected[task] = bundle
            if cfg.refit:
                bundles[task] = refit_model(
                    bundle, feats, table, y, frame["report_date"], split.matured, split.gap_days, cfg, trainer
                )
            else:
                end = split.test_start - pd.Timedelta(days=split.gap_days)
                bundle.metadata.update({"refit": {"refit": False}, "seen_until": f"{end:%Y-%m-%d}"})
                bundles[task] = bundle
        on_stage(STAGES[2] if task == "fraud" else STAGES[3])
    if not bundles:
        raise TrainingRefused("no model could be trained: " + "; ".join(skipped.values()))
    notes = list(split.notes)
    unlabelled = {task: int(np.isnan(ys[task]).sum()) for task in bundles}

    # unlabelled claims stay NaN: routing counts them in route shares, never as non-fraud
    y_fraud = ys["fraud"] if "fraud" in bundles else None
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
    registry.configure(settings)  # the champion is read from the configured registry (fairness, comparison)
    reference, fairness_rows = _reference(table, frame, split, bundles, selected, scores, y_fraud, policy, cfg, source)
    for bundle in bundles.values():
        bundle.reference = reference.to_dict()
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
        selected,
        skipped,
        metrics,
        tables,
        policy,
        check.report_path,
        config_origin,
        scores,
        unlabelled,
        fairness_rows,
    )
    on_stage(STAGES[5])
    return TrainResult(
        run_id,
        models,
        skipped,
        metrics,
        policy,
        periods,
        bundles,
        selected,
        split,
        config_origin,
        notes,
        unlabelled,
        poisoning=fairness_rows["poisoning"],
    )


class TrainingRefused(registry.RegistryError):
    """Nothing to train on (no label with enough positives in every period)."""


def _unsupportable(y: np.ndarray, claims: int, min_positives: int) -> str | None:
    """Why no split of this label could give a model (None when one might)."""
    labelled = ~np.isnan(y)
    if not labelled.any():
        return "this source has no such label"
    pos, n = int(y[labelled].sum()), int(labelled.sum())
    if pos < 3 * min_positives:
        return (
            f"only {pos:,} positives in all {claims:,} claims ({n:,} labelled); a model needs at least "
            f"{3 * min_positives:,} ({min_positives:,} per period): add labelled claims or lower "
            "min_positives in --training-config"
        )
    if pos == n:
        return f"all {n:,} labelled claims are positive: a model needs negatives too"
    return None


def _why_not(y: np.ndarray, split: TimeSplit, min_positives: int) -> str | None:
    """Why this split leaves a period without enough positives (None when every period has them)."""
    for name, mask in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        lab = mask & ~np.isnan(y)
        pos = int(np.nansum(y[lab]))
        if pos < min_positives or pos == lab.sum():
            return (
                f"{pos} positive(s) of {int(lab.sum())} labelled claims in the {name} period "
                f"(needs {min_positives} and some negatives): set split dates or fractions, or lower "
                "min_positives, in --training-config"
            )
    return None


def _reference(table, frame, split, bundles, selected, scores, y_fraud, policy, cfg, source):
    """What monitoring compares live claims with (:mod:`monitoring.reference`): the test period's
    features, scores (of the models fitted on the train period: out of sample, as live claims are),
    routes and metrics; and the routes' fairness by group there (for the promotion gate)."""
    test = split.test
    names = list(dict.fromkeys([f for b in bundles.values() for f in b.features] + list(policy.reads)))
    names = [n for n in names if n in table.columns]
    categorical = {c for b in bundles.values() for c in b.encoder.categories}
    fraud, fast = _part(scores.get("fraud"), test), _part(scores.get("fast_track"), test)
    routes, _ = policy.route_table(table[test], fraud, fast)
    extra = {
        "profile": data_profile(frame),
        "period": split.periods().get("test", ""),
        "source": source,
        "siu_capacity": cfg.routing.siu_capacity,
        "fast_track_leakage_cap": cfg.routing.fast_track_leakage_cap,
    }
    if fraud is not None and len(fraud):
        extra["red_flag_score"] = float(np.quantile(fraud, 0.9))
    extra["estimated"] = {
        task: estimated_metrics(scores[task][test], cfg.routing.siu_capacity) for task in bundles
    }  # what monitoring's performance estimates are compared with
    reference = build_reference(
        table.loc[test, names],
        categorical,
        {task: scores[task][test] for task in bundles},
        routes,
        {task: dict(selected[task].metadata.get("test_metrics", {})) for task in bundles},
        extra,
    )
    y = y_fraud[test] if y_fraud is not None else np.full(int(test.sum()), np.nan)
    groups = group_columns(frame[test].reset_index(drop=True), cfg.fairness)
    challenger = fairness(groups, routes, y, cfg.fairness).to_dict()
    champion = _champion_on_test(table[test])
    champion_fair = fairness(groups, champion[0], y, cfg.fairness).to_dict() if champion else None
    old_reference = Reference.from_dict(champion[1]) if champion and champion[1] else None
    shares = {r: (float(np.mean(routes == r)), float(np.mean(champion[0] == r))) for r in ROUTES} if champion else None
    poisoning = findings(
        extra["profile"],
        old_reference.extra.get("profile") if old_reference else None,
        reference,
        old_reference,
        shares,
        cfg.poisoning,
    )
    checks = {"challenger": challenger, "champion": champion_fair, "period": extra["period"], "poisoning": poisoning}
    return reference, checks


def _champion_on_test(table: pd.DataFrame) -> tuple[np.ndarray, dict] | None:
    """The champion's routes of the test claims and its bundle's reference (None: no champion, or
    it uses features this data lacks)."""
    champions = {}
    for task in LABELS:
        if registry.version_for(task, registry.CHAMPION) is not None:
            champions[task] = load_bundle(task, registry.CHAMPION)
    if not champions:
        return None
    policy = RoutingPolicy.from_dict(next(iter(champions.values())).metadata["policy"])
    needed = {f for b in champions.values() for f in b.features} | set(policy.reads)
    if not needed <= set(table.columns):
        return None
    p = {task: b.predict(b.encoder.transform(table)) for task, b in champions.items()}
    routes, _ = policy.route_table(table, p.get("fraud"), p.get("fast_track"))
    reference = next((b.reference for b in champions.values() if b.reference), None) or {}
    return routes, reference


def _part(values: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[mask]


def _importance(bundle: ModelBundle) -> pd.DataFrame:
    gain = bundle.booster.feature_importance(importance_type="gain")
    return (
        pd.DataFrame({"feature": bundle.features, "gain": gain})
        .sort_values("gain", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def _comparison(
    task: str, table: pd.DataFrame, frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, split: TimeSplit, cfg
) -> tuple[dict[str, float], dict[str, str]]:
    """The challenger (its honest, pre-refit model) and the current champion on the same claims.

    A refitted champion has learnt from claims up to its ``seen_until`` date, which may overlap this
    run's test period; scored there, its figure would be optimistic. So both are compared on the test
    claims reported after the champion's data ends. When those hold fewer than ``min_positives``
    positives (or no negative), they are compared on the whole test period instead and the note says
    the champion's figure is optimistic there.
    """
    if registry.version_for(task, registry.CHAMPION) is None:
        return {}, {}
    champion_version = registry.version_for(task, registry.CHAMPION).version
    champion = load_bundle(task, registry.CHAMPION)
    if not set(champion.features) <= set(table.columns):
        return {}, {f"{task}.compare.note": "champion uses features this data lacks: not compared"}
    t = pd.to_datetime(frame["report_date"]).to_numpy()
    test = split.test & ~np.isnan(y)
    seen_until = _seen_until(champion)
    unseen = test & (t >= np.datetime64(seen_until + pd.Timedelta(days=1))) if seen_until is not None else test
    pos = int(y[unseen].sum())
    if seen_until is None:
        mask, note = test, "champion's data end unknown: compared on the whole test period"
    elif pos >= cfg.min_positives and pos < unseen.sum():
        mask = unseen
        note = f"compared on the test claims reported after the champion's data ends ({seen_until:%Y-%m-%d})"
    else:
        mask = test
        note = (
            f"champion's data ends {seen_until:%Y-%m-%d}: only {int(unseen.sum()):,} test claims after it "
            f"({pos} positives < min_positives {cfg.min_positives}), so compared on the whole test period, "
            "where the champion's figure is optimistic"
        )
    champ = champion.predict(champion.encoder.transform(table[mask]))
    cap = cfg.routing.siu_capacity
    dates = pd.to_datetime(frame["report_date"])[mask]
    metrics = {
        **{f"{task}.compare.challenger.{k}": v for k, v in binary_metrics(y[mask], p[mask], cap).items()},
        **{f"{task}.compare.champion.{k}": v for k, v in binary_metrics(y[mask], champ, cap).items()},
        **{f"{task}.champion_on_test.{k}": v for k, v in _score_on(champion, table, y, test, cap).items()},
    }
    params = {
        f"{task}.compare.champion_version": str(champion_version),
        f"{task}.compare.period": f"{dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d}",
        f"{task}.compare.claims": f"{int(mask.sum()):,} claims ({int(y[mask].sum()):,} positives)",
        f"{task}.compare.note": note,
    }
    return metrics, params


def _seen_until(bundle: ModelBundle) -> pd.Timestamp | None:
    """The last report date whose label the model learnt from (fit or calibration)."""
    if bundle.metadata.get("seen_until"):
        return pd.Timestamp(bundle.metadata["seen_until"])
    valid = bundle.metadata.get("periods", {}).get("valid")  # bundles from before the refit
    return pd.Timestamp(valid.split(" to ")[1]) if valid else None


def _score_on(bundle: ModelBundle, table: pd.DataFrame, y: np.ndarray, mask: np.ndarray, capacity: float) -> dict:
    return binary_metrics(y[mask], bundle.predict(bundle.encoder.transform(table[mask])), capacity)


def _refit_params(task: str, bundle: ModelBundle) -> dict[str, str]:
    info = bundle.metadata.get("refit", {})
    if not info.get("refit"):
        return {f"{task}.refit": "false (registered model fitted on the train period)"}
    keys = ("period", "rows", "positives", "iterations", "selection_iterations", "selection_rows")
    return {
        f"{task}.refit": "true",
        **{f"{task}.refit.{k}": str(info[k]) for k in keys},
        f"{task}.refit.iterations_rule": info["iterations_rule"],
        f"{task}.refit.calibration": info["calibration"],
        f"{task}.refit.maturity": info["maturity"],
    }


def _log_run(
    settings,
    cfg,
    source,
    data,
    frame,
    table,
    split,
    feats,
    bundles,
    selected,
    skipped,
    metrics,
    tables,
    policy,
    report_path,
    config_origin,
    scores,
    unlabelled,
    fairness_rows,
) -> tuple[str, dict]:
    import mlflow

    from training.card import model_card
    from training.plots import write_plots

    models = {}
    compare_params: dict[str, str] = {}
    with registry.start_run(settings) as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for task, bundle in bundles.items():
            y = frame[bundle.label].astype("float64").to_numpy()
            m, p = _comparison(task, table, frame, y, scores[task], split, cfg)
            metrics.update(m)
            compare_params.update(p)
            info = bundle.metadata.get("refit", {})
            if info.get("refit"):
                metrics.update({f"{task}.refit.rows": info["rows"], f"{task}.refit.iterations": info["iterations"]})
        mlflow.log_params(
            {
                "source": source,
                "data": str(data),
                "rows": len(frame),
                "features": len(feats),
                "data_fingerprint": fingerprint(frame),
                "seed": cfg.seed,
                "training_config": config_origin,
                "fitted": next(iter(bundles.values())).metadata.get("fitted", "in process"),
                **{f"period.{k}": v for k, v in split.periods().items()},
                "split.gap_days": split.gap_days,
                "split.notes": "; ".join(split.notes) or "none",
                "skipped": "; ".join(skipped.values()) or "none",
                **{f"{task}.unlabelled": n for task, n in unlabelled.items()},
                **{k: v for task, b in bundles.items() for k, v in _refit_params(task, b).items()},
                **compare_params,
            }
        )
        mlflow.log_dict(cfg.model_dump(mode="json"), "training_config.json")
        mlflow.log_dict({k: v for k, v in fairness_rows.items() if k != "poisoning"}, registry.FAIRNESS_ARTIFACT)
        mlflow.log_dict({"findings": fairness_rows["poisoning"]}, registry.POISONING_ARTIFACT)
        mlflow.log_dict(next(iter(bundles.values())).reference or {}, "monitoring/reference.json")
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        for name, tbl in tables.items():
            path = tmp / name
            tbl.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "evaluation")
        mlflow.log_artifact(str(report_path), "validation")
        policy_path = tmp / "routing_policy.json"
        policy_path.write_text(json.dumps(policy.to_dict(), indent=2))
        mlflow.log_artifact(str(policy_path))
        for plot in write_plots(tmp / "plots", frame, table, split, selected, policy):
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
