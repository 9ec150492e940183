"""Injured people per injury type and the accident's month: mapped by ``count_of``, features from the catalog."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import catalog, schema
from features.build import available_features, build_features
from features.config import Settings
from features.data.sources import LoadedClaims, load_claims
from features.errors import MappingError

INJURY_FEATURES = [*schema.INJURY_COUNTS.values()]
TYPES = {"minor injury": "minor", "medium injury": "medium", "not recorded": "not_recorded"}


def load(tmp_path: Path, table: pd.DataFrame, fields: str, reported: str = "2024-06-01") -> LoadedClaims:
    table.assign(D="2024-01-01", R=reported).to_csv(tmp_path / "t.csv", index=False)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: t\nfields:\n"
        '  claim_id: {row_number: true, prefix: "T-"}\n'
        "  line_of_business: {value: bodily_injury}\n"
        "  incident_date: {column: D}\n"
        "  report_date: {column: R}\n" + textwrap.indent(textwrap.dedent(fields), "  "),
        encoding="utf-8",
    )
    return load_claims(tmp_path / "t.csv", f"mapping:{mapping}", Settings(home=tmp_path / "home"))


COUNTS = "".join(
    f'{schema.INJURY_COUNTS[t]}: {{count_of: {{columns: [I1, I2, I3], value: "{v}"}}}}\n' for v, t in TYPES.items()
)


@pytest.fixture
def injured() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "I1": ["minor injury", "not recorded", None, "medium injury", " minor injury "],
            "I2": ["minor injury", None, None, "minor injury", "not recorded"],
            "I3": [None, None, None, "medium injury", "other"],
        }
    )


def test_count_of_counts_each_claims_injured_people_per_type(tmp_path: Path, injured: pd.DataFrame) -> None:
    f = load(tmp_path, injured, COUNTS).frame
    assert f["injuries_minor"].tolist()[:2] == [2, 0] and f["injuries_minor"].tolist()[3:] == [1, 1]
    assert f["injuries_medium"].tolist()[3] == 2
    assert f["injuries_not_recorded"].tolist()[:2] == [0, 1]  # explicit: a person with no type recorded
    assert f["injuries_not_recorded"].iloc[4] == 1
    row = f.iloc[2]  # nothing recorded in any column: unknown, not zero
    assert all(pd.isna(row[c]) for c in ("injuries_minor", "injuries_medium", "injuries_not_recorded"))
    assert str(f["injuries_minor"].dtype) == "Int64"


def test_count_of_accepts_several_values_and_refuses_other_steps(tmp_path: Path, injured: pd.DataFrame) -> None:
    spec = 'injuries_minor: {count_of: {columns: [I1, I2, I3], value: ["minor injury", "medium injury"]}}\n'
    assert load(tmp_path, injured, spec).frame["injuries_minor"].tolist()[:2] == [2, 0]
    with pytest.raises(MappingError, match="count_of takes no other step"):
        load(tmp_path, injured, "injuries_minor: {count_of: {columns: [I1], value: x}, map: {x: y}}\n")
    with pytest.raises(MappingError, match="count_of gives a number"):
        load(tmp_path, injured, 'incident_severity: {count_of: {columns: [I1], value: "minor injury"}}\n')
    with pytest.raises(MappingError, match="value"):
        load(tmp_path, injured, "injuries_minor: {count_of: {columns: [I1]}}\n")


def test_worst_of_makes_not_recorded_explicit_below_every_recorded_type(tmp_path: Path, injured: pd.DataFrame) -> None:
    spec = """\
    incident_severity:
      worst_of: [I1, I2, I3]
      map: {"minor injury": minor, "medium injury": medium, "not recorded": not_recorded, other: null}
      order: [not_recorded, minor, small, medium, high, severe, fatal]
    """
    f = load(tmp_path, injured, spec).frame
    assert f["incident_severity"].tolist()[:2] == ["minor", "not_recorded"]
    assert pd.isna(f["incident_severity"].iloc[2]) and f["incident_severity"].tolist()[3:] == ["medium", "minor"]


def test_features_follow_the_counts_and_a_source_without_them_lacks_them(tmp_path: Path, injured: pd.DataFrame) -> None:
    with_counts = load(tmp_path, injured, COUNTS).frame
    names = {f.name for f in available_features(with_counts)}
    assert {"injuries_minor", "injuries_medium", "injuries_not_recorded", "incident_month"} <= names
    table = build_features(with_counts, ["injuries_minor", "injuries_not_recorded", "incident_month"])
    assert table["injuries_minor"].tolist()[:2] == [2.0, 0.0] and np.isnan(table["injuries_minor"].iloc[2])
    assert (table["incident_month"] == (2024 - 1970) * 12).all()  # January 2024

    without = load(tmp_path, injured, "injury_count: {value: 1}\n").frame
    names = {f.name for f in available_features(without)}
    assert not names & set(INJURY_FEATURES), "no fake zeros for a source that records no injury types"
    assert "injury_count" in names


def test_accident_month_is_a_feature_only_where_claims_are_reported_late(tmp_path: Path, injured) -> None:
    late = load(tmp_path, injured, COUNTS, reported="2024-06-01").frame  # 152 days after
    prompt = load(tmp_path, injured, COUNTS, reported="2024-01-20").frame  # 19 days after
    assert "incident_month" in {f.name for f in available_features(late)}
    assert "incident_month" not in {f.name for f in available_features(prompt)}
    assert "injuries_minor" in {f.name for f in available_features(prompt)}


def test_each_new_feature_has_reason_words() -> None:
    for name in [*INJURY_FEATURES, "incident_month"]:
        f = catalog.BY_NAME[name]
        assert f.kind == "numeric" and f.description
        sentence = f.explain(3.0)
        assert sentence and "{" not in sentence and sentence != f"{f.description}: 3.0"
    assert catalog.BY_NAME["incident_month"].explain(315.0) == "Incident in 1996-04"
    assert "not recorded" in catalog.BY_NAME["injuries_not_recorded"].explain(1.0)


@pytest.mark.realdata
def test_bodily_injury_counts_sum_to_the_injured_people(shared_data: Path) -> None:
    loaded = load_claims(None, "aus_bodily_injury", Settings(shared_data=shared_data))
    f = loaded.frame
    counts = f[INJURY_FEATURES]
    assert counts.notna().all().all()
    upto5 = f["injury_count"] <= 5
    assert upto5.all()  # the table records at most five injured people
    assert (counts.sum(axis=1)[upto5] == f.loc[upto5, "injury_count"]).all()
    assert int(f["injuries_not_recorded"].sum()) > 0 and f["incident_severity"].notna().all()
    assert (f["incident_severity"] == schema.NOT_RECORDED).sum() == 659
    names = {x.name for x in available_features(f, loaded.extras)}
    assert {"incident_month", "injuries_minor", "injuries_not_recorded", "reporting_delay_days"} <= names
