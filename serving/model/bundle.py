"""A trained model as it travels from training to scoring: booster, encoder, calibration, metadata.

Training writes a bundle (a folder of plain files, logged to MLflow); batch scoring, monitoring and
the service read it. Nothing here fits anything, so scoring never imports training code.

Folder layout::

    model.txt          LightGBM booster (its own text format)
    bundle.json        {"task", "label", "encoder", "calibration", "metadata"}
    reference.json     what the model's test period looked like, for monitoring (optional;
                       :mod:`monitoring.reference` writes and reads it)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model.encoding import FeatureEncoder

if TYPE_CHECKING:
    from serving.model.explainer import Explainer

FORMAT_VERSION = 1
TIE_BREAK = 1e-9
REFERENCE_FILE = "reference.json"


@dataclass(frozen=True)
class Calibration:
    """Maps raw model probabilities to calibrated ones.

    ``kind`` is ``isotonic`` (piecewise-linear through ``x``/``y`` knots), ``platt``
    (``sigmoid(a * logit(p) + b)``) or ``identity``.
    """

    kind: str = "identity"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.kind == "isotonic":
            # isotonic steps tie many claims; a nudge by the raw score keeps the model's ranking
            # (for thresholds and ROC) without moving any probability by more than 1e-9
            return np.clip(np.interp(p, self.x, self.y) + TIE_BREAK * p, 0.0, 1.0)
        if self.kind == "platt":
            q = np.clip(p, 1e-12, 1 - 1e-12)
            z = self.a * np.log(q / (1 - q)) + self.b
            return 1.0 / (1.0 + np.exp(-z))
        return p

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        return cls(
            d.get("kind", "identity"),
            tuple(d.get("x", ())),
            tuple(d.get("y", ())),
            float(d.get("a", 1.0)),
            float(d.get("b", 0.0)),
        )


PREDICT_LOCK = threading.Lock()
"""Held around every call into LightGBM's predict in this process. One booster predicted from two
threads at once with different parameters (raw scores beside probabilities, one thread beside
all, contributions) races inside LightGBM (its Predictor set-up writes the booster's shared state:
LightGBM issues #5482 and #6142); a service worker that explained a claim while its batch thread
scored once died of it in lib_lightgbm.so. The fast paths (scores of a batch, the exact explainer's
own kernels) take it once per batch; only the booster's own calls wait for one another."""


@dataclass
class ModelBundle:
    task: str
    """``fraud`` or ``fast_track``."""
    label: str
    booster: Any
    """A ``lightgbm.Booster``."""
    encoder: FeatureEncoder
    calibration: Calibration = field(default_factory=Calibration)
    metadata: dict = field(default_factory=dict)
    reference: dict | None = None
    """The compact reference of the model's test period (features, scores, routes, metrics) that
    monitoring compares live claims with; None for bundles trained before it was recorded."""
    _explainer: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def features(self) -> tuple[str, ...]:
        return self.encoder.features

    @property
    def explainer(self) -> Explainer:
        """Exact SHAP values for this booster (:mod:`serving.model.explainer`): built on first use,
        then kept, so a service pays for it once per loaded model."""
        if self._explainer is None:
            from serving.model.explainer import Explainer

            self._explainer = Explainer.for_booster(self.booster)
        return self._explainer

    def predict_raw(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's own probability for each row of an encoded matrix."""
        with PREDICT_LOCK:
            return self.booster.predict(matrix, num_threads=1 if len(matrix) < 64 else 0)

    def predict_log_odds(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's raw score (log-odds) for each row of an encoded matrix."""
        with PREDICT_LOCK:
            return self.booster.predict(matrix, raw_score=True, num_threads=1 if len(matrix) < 64 else 0)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for each row of an encoded matrix."""
        return self.calibration.apply(self.predict_raw(matrix))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        (folder / "bundle.json").write_text(
            json.dumps(
                {
                    "format_version": FORMAT_VERSION,
                    "task": self.task,
                    "label": self.label,
                    "encoder": self.encoder.to_dict(),
                    "calibration": self.calibration.to_dict(),
                    "metadata": self.metadata,
                },
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
        if self.reference is not None:
            (folder / REFERENCE_FILE).write_text(json.dumps(self.reference, default=str), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelBundle:
        import lightgbm as lgb

        folder = Path(folder)
        spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        if spec.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: bundle format {spec.get('format_version')} is not {FORMAT_VERSION}")
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        reference = folder / REFERENCE_FILE
        return cls(
            spec["task"],
            spec["label"],
            booster,
            FeatureEncoder.from_dict(spec["encoder"]),
            Calibration.from_dict(spec["calibration"]),
            spec.get("metadata", {}),
            json.loads(reference.read_text(encoding="utf-8")) if reference.is_file() else None,
        )
