"""The MLflow pyfunc face of a :class:`~serving.model.bundle.ModelBundle`.

``mlflow.pyfunc.load_model("models:/claimscore-fraud@champion").predict(feature_table)`` returns
calibrated probabilities for a table of features (the columns the model was trained on; categories
as text). It re-applies the model's own category lists, which MLflow's LightGBM flavour does not.
The service and batch scoring use the bundle directly (``unwrap_python_model().bundle``) for speed.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from serving.model.bundle import ModelBundle


class BundleModel(mlflow.pyfunc.PythonModel):
    """Loads the bundle folder logged as the ``bundle`` artifact."""

    bundle: ModelBundle | None = None

    def load_context(self, context) -> None:
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        assert self.bundle is not None
        return self.bundle.predict(self.bundle.encoder.transform(pd.DataFrame(model_input)))
