"""ClaimScore against plain LightGBM baselines on the public data sets, on the same time-ordered split.

ClaimScore: `claimscore train` (features, class balance, monotone constraints, early stopping on
validation, calibration). Baselines: `lightgbm.LGBMClassifier()` with default settings, fitted on the
same training period, (1) on ClaimScore's feature table and (2) on the source's RAW columns that are
known at notice (what a data scientist handed the CSV would use; see ``RAW``). All are judged on the
later test period. Prints JSON; :func:`render` makes the RESULTS.md table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "vehicle_fraud": ("fraud", ROOT / "training/configs/vehicle_fraud.yaml"),
    "aus_bodily_injury": ("fast_track", ROOT / "training/configs/aus_bodily_injury.yaml"),
}

INJURED = [f"InjType{i}" for i in range(1, 6)]


def _raw_bodily_injury(raw: pd.DataFrame) -> pd.DataFrame:
    """Accident month (AccMth: months since July 1989), report delay in months, InjNb, InjType1..5."""
    out = pd.DataFrame(
        {"AccMth": raw["AccMth"], "ReportDelayMonths": raw["ReportMth"] - raw["AccMth"], "InjNb": raw["InjNb"]}
    )
    for c in INJURED:
        out[c] = raw[c].astype("category")
    return out


# Outcomes and identifiers are never inputs; NumberOfSuppliments (supplements added after the report)
# is not known at notice either (the vehicle_fraud mapping leaves it out for that reason).
VEHICLE_NOT_AT_NOTICE = ["FraudFound_P", "PolicyNumber", "RepNumber", "NumberOfSuppliments"]


def _raw_vehicle(raw: pd.DataFrame) -> pd.DataFrame:
    """Every other column as it is: text as categories, numbers as numbers."""
    out = raw.drop(columns=VEHICLE_NOT_AT_NOTICE)
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype("category")
    return out


RAW = {"vehicle_fraud": _raw_vehicle, "aus_bodily_injury": _raw_bodily_injury}
"""Source -> the raw columns known at notice, as a plain model would take them."""


def raw_table(source: str, mapping, shared: Path, rows: int) -> pd.DataFrame:
    """The source's CSV with the mapping's exclusions applied (so rows line up with the canonical
    frame, which keeps the table's order), as the raw-column baseline's inputs."""
    raw = pd.read_csv(shared / mapping.default_data)
    for ex in mapping.exclude:
        raw = raw[~raw.eval(ex.where).fillna(False).astype(bool)]
    if len(raw) != rows:
        raise RuntimeError(f"{source}: {len(raw)} raw rows after exclusions, {rows} canonical claims")
    return RAW[source](raw.reset_index(drop=True))


def _plain(x: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, capacity: float) -> dict:
    import lightgbm as lgb

    from monitoring.metrics import binary_metrics

    model = lgb.LGBMClassifier(random_state=0, verbose=-1).fit(x[train], y[train])
    return binary_metrics(y[test], model.predict_proba(x[test])[:, 1], capacity)


def main() -> dict:
    from features.build import available_features, build_features
    from features.config import Settings
    from features.data.sources import load_claims
    from features.schema import LABELS
    from training.config import load_training_config
    from training.pipeline import train
    from training.split import time_split

    shared = ROOT.parent / "shared" / "data"
    out = {}
    for source, (task, cfg_path) in RUNS.items():
        cfg = load_training_config(cfg_path)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(home=Path(tmp), shared_data=shared).resolved().ensure_dirs()
            result = train(None, source, settings, cfg)
            loaded = load_claims(None, source, settings)
        frame = loaded.frame
        feats = available_features(frame, loaded.extras)
        table = build_features(frame, feats, loaded.extras)
        for f in feats:
            if f.kind == "categorical":
                table[f.name] = table[f.name].astype("category")
        split = getattr(result, "split", None) or time_split(frame["report_date"], cfg.split)
        y = frame[LABELS[task]].astype("float64").to_numpy()
        lab = ~np.isnan(y)
        train_, test_ = split.train & lab, split.test & lab
        raw = raw_table(source, loaded.mapping, shared, len(frame))
        ours = {k.split(".")[-1]: v for k, v in result.metrics.items() if k.startswith(f"{task}.test.")}
        out[source] = {
            "task": task,
            "periods": result.periods,
            "features": len(feats),
            "feature_names": [f.name for f in feats],
            "raw_columns": list(raw.columns),
            "claimscore": ours,
            "baseline": _plain(table, y, train_, test_, cfg.routing.siu_capacity),
            "raw_baseline": _plain(raw, y, train_, test_, cfg.routing.siu_capacity),
        }
    return out


MODELS = {
    "claimscore": "ClaimScore",
    "baseline": "plain LightGBM, ClaimScore's features",
    "raw_baseline": "plain LightGBM, raw columns",
}


def render(r: dict) -> str:
    """The RESULTS.md table: each source's models side by side."""
    md = (
        "| data set | model | test period | features | | ROC-AUC | average precision | positive rate |\n"
        "|---|---|---|---:|---|---:|---:|---:|\n"
    )
    for source, v in r.items():
        for who, name in MODELS.items():
            if who not in v:
                continue
            m = v[who]
            n = len(v["raw_columns"]) if who == "raw_baseline" else v["features"]
            md += (
                f"| {source} | {v['task']} | {v['periods']['test']} | {n} | {name} | "
                f"{m['roc_auc']:.3f} | {m['average_precision']:.3f} | {m['positive_rate']:.3f} |\n"
            )
    return md


if __name__ == "__main__":
    print(json.dumps(main(), default=float))
