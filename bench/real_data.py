"""ClaimScore against a plain LightGBM baseline on the public data sets, on the same time-ordered split.

ClaimScore: `claimscore train` (features, class balance, monotone constraints, early stopping on
validation, calibration). Baseline: `lightgbm.LGBMClassifier()` with default settings on the same
feature table and training period. Both are judged on the later test period. Prints JSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "vehicle_fraud": ("fraud", ROOT / "training/configs/vehicle_fraud.yaml"),
    "aus_bodily_injury": ("fast_track", ROOT / "training/configs/aus_bodily_injury.yaml"),
}


def main() -> dict:
    import lightgbm as lgb

    from features.build import available_features, build_features
    from features.config import Settings
    from features.data.sources import load_claims
    from features.schema import LABELS
    from monitoring.metrics import binary_metrics
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
        split = time_split(frame["report_date"], cfg.split)
        y = frame[LABELS[task]].astype("float64").to_numpy()
        lab = ~np.isnan(y)
        base = lgb.LGBMClassifier(random_state=0, verbose=-1).fit(table[split.train & lab], y[split.train & lab])
        p = base.predict_proba(table[split.test & lab])[:, 1]
        ours = {k.split(".")[-1]: v for k, v in result.metrics.items() if k.startswith(f"{task}.test.")}
        theirs = binary_metrics(y[split.test & lab], p, cfg.routing.siu_capacity)
        out[source] = {
            "task": task,
            "periods": result.periods,
            "features": len(feats),
            "claimscore": ours,
            "baseline": theirs,
        }
    return out


if __name__ == "__main__":
    print(json.dumps(main(), default=float))
