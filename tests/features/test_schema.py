"""The canonical schema: declared once, round-trips through files, names bad columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import catalog, schema
from features.config import load_settings
from features.errors import ConfigError, SchemaError


def test_schema_round_trips_through_parquet(synthetic_claims, tmp_path):
    path = tmp_path / "claims.parquet"
    synthetic_claims.to_parquet(path, index=False)
    back = schema.conform(pd.read_parquet(path))
    pd.testing.assert_frame_equal(back.drop(columns="simple_settlement"), synthetic_claims)


def test_schema_round_trips_through_csv(synthetic_claims, tmp_path):
    path = tmp_path / "claims.csv"
    synthetic_claims.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    back, problems = schema.coerce(pd.read_csv(path))
    assert problems == []
    pd.testing.assert_frame_equal(back.drop(columns="simple_settlement"), synthetic_claims)


def test_conform_gives_every_column_in_schema_order_with_schema_dtypes():
    frame = schema.conform(
        pd.DataFrame(
            {
                "claim_id": ["a"],
                "line_of_business": ["motor"],
                "incident_date": ["2024-01-01"],
                "report_date": ["2024-01-02 10:00"],
                "x_band": ["low"],
            }
        )
    )
    assert list(frame.columns) == list(schema.COLUMNS) + ["x_band"]
    for f in schema.FIELDS:
        assert str(frame[f.name].dtype) == f.pandas_dtype, f.name


def test_conform_names_every_missing_required_column():
    with pytest.raises(SchemaError, match="incident_date, report_date"):
        schema.conform(pd.DataFrame({"claim_id": ["a"], "line_of_business": ["motor"]}))


def test_coerce_reports_unreadable_values_by_column():
    frame, problems = schema.coerce(
        pd.DataFrame(
            {
                "claim_id": ["a", "b", "c"],
                "line_of_business": ["motor"] * 3,
                "incident_date": ["2024-01-01", "not a date", None],
                "report_date": ["2024-01-02"] * 3,
                "claimed_amount": ["12.5", "abc", ""],
                "police_report": ["yes", "no", "perhaps"],
                "number_of_parties": [1, 2.5, 3],
            }
        )
    )
    found = {col: (count, examples) for col, count, examples in problems}
    assert found["incident_date"] == (1, ["not a date"])
    assert found["claimed_amount"][1] == ["abc"]
    assert found["police_report"] == (1, ["perhaps"])
    assert found["number_of_parties"] == (1, ["2.5"])
    assert frame["claimed_amount"].tolist()[0] == 12.5 and np.isnan(frame["claimed_amount"][1])
    with pytest.raises(SchemaError, match="incident_date"):
        schema.conform(frame.assign(incident_date=["2024-01-01", "not a date", None]))


def test_numeric_ids_read_from_csv_lose_their_decimal_point():
    frame = schema.conform(
        pd.DataFrame(
            {
                "claim_id": [1.0, 2.0],
                "line_of_business": ["motor"] * 2,
                "incident_date": ["2024-01-01"] * 2,
                "report_date": ["2024-01-01"] * 2,
            }
        )
    )
    assert frame["claim_id"].tolist() == ["1", "2"]


def test_every_label_is_an_outcome_column():
    for task, label in schema.LABELS.items():
        assert schema.BY_NAME[label].stage == "outcome", f"{task} is trained on {label}, known at notice or never"


def test_outcomes_reach_a_model_only_through_the_history_of_earlier_claims():
    """A claim's own outcome (or the synthetic truth) never feeds its features; outcome columns are read
    only by history and link features, which take them from earlier claims decided before the report
    (that point-in-time rule is tested in tests/features/test_features.py)."""
    notice, outcomes = set(schema.NOTICE), set(schema.OUTCOMES)
    protected = {f.name for f in schema.FIELDS if f.protected}
    truth = {f.name for f in schema.FIELDS if f.stage == "truth"}
    for f in catalog.FEATURES:
        needs = set(f.needs) | set(f.needs_any)
        assert needs <= set(schema.COLUMNS), f"{f.name} needs unknown column(s) {sorted(needs - set(schema.COLUMNS))}"
        assert f.name not in outcomes | truth, f"{f.name} is an outcome of the claim it describes"
        assert not needs & (truth | protected), f"{f.name} needs {sorted(needs & (truth | protected))}"
        if f.family == "notice":
            assert needs <= notice, f"notice feature {f.name} needs {sorted(needs - notice)}"
        elif needs & outcomes:
            assert f.family in ("history", "link"), f"{f.name} reads outcomes as a {f.family} feature"


def test_settings_read_file_then_environment(tmp_path):
    cfg = tmp_path / "claimscore.toml"
    cfg.write_text(f'home = "{tmp_path / "from-file"}"\nhistory_url = "sqlite:///h.db"\n')
    s = load_settings(cfg, env={})
    assert s.home == tmp_path / "from-file"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'from-file' / 'mlflow.db'}"
    assert s.history_url == "sqlite:///h.db"
    s = load_settings(cfg, env={"CLAIMSCORE_HOME": str(tmp_path / "from-env")})
    assert s.home == tmp_path / "from-env"
    assert s.decision_log_url.endswith("from-env/decisions.db")


def test_settings_name_an_unknown_key(tmp_path):
    cfg = tmp_path / "claimscore.toml"
    cfg.write_text('hom = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'hom'"):
        load_settings(cfg, env={})
    cfg.write_text("home = [1]\n")
    with pytest.raises(ConfigError, match="'home' must be a string"):
        load_settings(cfg, env={})


def test_mlflow_tracking_uri_is_taken_from_an_mlflow_project_run_only(tmp_path):
    stale = {"MLFLOW_TRACKING_URI": "sqlite:///elsewhere.db", "CLAIMSCORE_HOME": str(tmp_path)}
    assert load_settings(env=stale).mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    in_project = {**stale, "MLFLOW_RUN_ID": "abc"}
    assert load_settings(env=in_project).mlflow_tracking_uri == "sqlite:///elsewhere.db"
