"""features.data.sources: built-in sources on the real tables, the mapping language, and every bad input."""

from __future__ import annotations

import os
import textwrap
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.config import Settings
from features.data.sources import BUILTIN_SOURCES, LoadedClaims, load_claims
from features.errors import DataFileError, MappingError, SchemaError
from features.identity import Identity

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
VEHICLE = SHARED / "vehicle_claims_fraud_1994_1995.csv"
BI = SHARED / "aus_bodily_injury_claims_to_1996.csv"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def settings(salt: str = "test-salt") -> Settings:
    return Settings(home=Path(".claimscore-test"), shared_data=SHARED, identity_secret=salt)


def write_mapping(tmp_path: Path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return f"mapping:{path}"


def one_line_error(exc_info: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# --- the built-in sources on the real tables ----------------------------------------------------


@pytest.fixture(scope="module")
def vehicle() -> LoadedClaims:
    if not VEHICLE.is_file():
        pytest.skip(f"{VEHICLE} absent")
    return load_claims(None, "vehicle_fraud", settings())


@pytest.fixture(scope="module")
def bodily_injury() -> LoadedClaims:
    if not BI.is_file():
        pytest.skip(f"{BI} absent")
    return load_claims(None, "aus_bodily_injury", settings())


def assert_canonical(loaded: LoadedClaims) -> None:
    cols = list(loaded.frame.columns)
    n = len(schema.COLUMNS)
    assert tuple(cols[:n]) == schema.COLUMNS
    assert all(c.startswith(schema.EXTRA_PREFIX) for c in cols[n:])
    for f in schema.FIELDS:
        assert str(loaded.frame[f.name].dtype) == str(pd.Series(dtype=f.pandas_dtype).dtype), f.name
    for c in schema.REQUIRED:
        assert loaded.frame[c].notna().all(), c
    assert loaded.type_problems == []
    assert set(loaded.extras) == set(cols[n:])


@pytest.mark.realdata
def test_vehicle_fraud_maps_every_claim_but_the_documented_exclusion(vehicle: LoadedClaims) -> None:
    f = vehicle.frame
    assert vehicle.rows_read == 11_337
    assert [n for _, n in vehicle.excluded] == [1]
    assert len(f) == 11_336
    assert_canonical(vehicle)
    assert f["claim_id"].is_unique and f["claim_id"].iloc[0] == "VF-1"
    assert int(f["fraud_confirmed"].sum()) == 710 and f["fraud_confirmed"].notna().all()
    assert f["fraud_confirmed"].mean() == pytest.approx(0.0626, abs=5e-4)
    assert f["simple_settlement"].isna().all()  # no fast-track label for this source
    assert int(f["claimant_age"].isna().sum()) == 249  # Age 0 -> unknown (250 in the file, 1 excluded)
    assert (f["report_date"] >= f["incident_date"]).all()
    assert f["report_date"].dt.year.isin([1994, 1995, 1996]).all()
    assert set(f["channel"].unique()) == {"broker", "agent"}
    assert set(f["fault"].unique()) == {"policyholder", "third_party"}
    assert set(f["cover_type"].unique()) == {"liability", "collision", "comprehensive"}
    assert f["claimant_id"].isna().all() and f["policy_start_date"].isna().all()  # not faked
    assert (
        dict(vehicle.adjusted)[
            "report_date: parts give a date before incident_date in the same month; set equal to incident_date"
        ]
        == 664
    )
    assert vehicle.extras["x_vehicle_price"].type == "ordinal"
    assert f["x_days_policy_accident"].max() == 4.0


@pytest.mark.realdata
def test_policy_number_is_never_a_feature(vehicle: LoadedClaims) -> None:
    raw = pd.read_csv(VEHICLE)
    raw = raw[raw["MonthClaimed"] != "0"].reset_index(drop=True)
    assert "PolicyNumber" in vehicle.mapping.id_columns
    for name, spec in vehicle.mapping.extras.items():
        assert "PolicyNumber" not in spec.source_columns(), name
    for col in schema.extra_columns(vehicle.frame.columns):
        values = pd.to_numeric(vehicle.frame[col], errors="coerce")
        assert not values.equals(raw["PolicyNumber"].astype("float64")), col
        assert abs(values.corr(raw["PolicyNumber"])) < 0.5, col
    features = [f.name for f in schema.FIELDS if f.dtype != "id"]
    for col in features:
        assert not vehicle.frame[col].astype(str).equals(raw["PolicyNumber"].astype(str)), col


@pytest.mark.realdata
def test_aus_bodily_injury_maps_every_claim_with_a_fast_track_label(bodily_injury: LoadedClaims) -> None:
    f = bodily_injury.frame
    assert len(f) == bodily_injury.rows_read == 17_975
    assert bodily_injury.excluded == [] and bodily_injury.adjusted == []
    assert_canonical(bodily_injury)
    assert f["claim_id"].is_unique and f["claim_id"].iloc[0] == "BI-1"
    assert f["fraud_confirmed"].isna().all()
    assert f["simple_settlement"].notna().all()
    assert f["simple_settlement"].mean() == pytest.approx(0.2082, abs=5e-4)
    assert (f["settlement_date"] >= f["report_date"]).all() and (f["report_date"] >= f["incident_date"]).all()
    assert (f["incident_severity"] == "not_recorded").sum() == 659  # every injury "not recorded": explicit
    assert f["incident_severity"].value_counts()["fatal"] == 213
    assert f["legal_representation"].mean() == pytest.approx(11_200 / 17_975)
    assert f["injury_count"].between(1, 5).all()
    assert not any("OpTime" in s.source_columns() for s in bodily_injury.mapping.fields.values())


def test_each_builtin_mapping_says_where_to_get_its_data() -> None:
    from features.data.sources import load_mapping

    for name in BUILTIN_SOURCES:
        m = load_mapping(name)
        assert m.name == name and len(m.description) > 200
    assert load_mapping("vehicle_fraud").default_data == VEHICLE.name
    assert load_mapping("aus_bodily_injury").default_data == BI.name


# --- the synthetic (identity) source ------------------------------------------------------------


HASHED_PHONE = "h1:" + "0123456789abcdef" * 2


def canonical_claims() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_id": ["S-1", "S-2", "S-3", "S-4"],
            "policy_id": ["P-1", "P-2", "P-3", "P-4"],
            "line_of_business": ["motor", "home", "motor", "travel"],
            "incident_date": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-02-01", "2024-03-01"]),
            "report_date": pd.to_datetime(
                ["2024-01-02 10:30", "2024-01-06", "2024-02-03", "2024-03-02"], format="ISO8601"
            ),
            "settlement_date": pd.to_datetime(["2024-01-20", "2024-03-01", None, "2024-03-10"]),
            "adjuster_assigned": [False, False, False, True],
            "legal_representation": [False, False, False, False],
            "disputed": [False, False, False, False],
            "phone": ["0612345678", HASHED_PHONE, None, "0612345678"],
            "simple_settlement": [False, False, True, True],  # stale: the mapping's rule wins
            "true_fraud": [False, True, False, False],
            "x_garage_visits": [1, 2, 3, 4],
            "notes": ["a", "b", "c", "d"],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_synthetic_source_recomputes_simple_settlement_and_keeps_canonical_ids(tmp_path: Path, suffix: str) -> None:
    df = canonical_claims()
    path = tmp_path / f"claims{suffix}"
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    loaded = load_claims(path, "synthetic", settings())
    f = loaded.frame
    assert list(f["simple_settlement"]) == [True, False, pd.NA, False]
    assert loaded.ignored_columns == ["notes"]
    assert list(f["x_garage_visits"]) == [1.0, 2.0, 3.0, 4.0] and loaded.extras["x_garage_visits"].type == "float"
    assert f["report_date"].iloc[0] == pd.Timestamp("2024-01-02 10:30")
    # a canonical file's raw personal ids are hashed (leading zeros count); hashed ones are kept
    assert f["phone"].iloc[0] == f["phone"].iloc[3] == Identity("test-salt").hash_value("0612345678", "phone")
    assert pd.isna(f["phone"].iloc[2]) and f["phone"].iloc[1] == HASHED_PHONE
    assert list(f["true_fraud"]) == [False, True, False, False]
    assert loaded.type_problems == []


def test_synthetic_source_without_required_columns_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "claims.parquet"
    canonical_claims().drop(columns=["report_date"]).to_parquet(path)
    with pytest.raises(SchemaError) as exc:
        load_claims(path, "synthetic", settings())
    one_line_error(exc, str(path), "report_date")


# --- one user mapping over CSV, Parquet, SQLite and PostgreSQL -----------------------------------


def user_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ClaimNo": ["00017", "00018", "00019", "00020", "00021"],
            "Phone": ["+44 20 7946 0000", "+44 20 7946 0001", None, "+44 20 7946 0000", "020 7946 0002"],
            "Lob": ["motor", "motor", "home", "motor", "home"],
            "LossDate": ["2024-01-03", "2024-02-10", "2024-02-11", "2024-03-01", "2024-03-05"],
            "Reported": ["05/01/2024", "10/02/2024", "13/02/2024", "01/03/2024", "31/03/2024"],
            "PaidCents": [125050, 0, 99999, 500000, 1000],
            "Lawyer": ["N", "Y", "N", "N", "N"],
            "Status": ["open", "open", "void", "open", "open"],
            "Fraud": [0.0, 1.0, np.nan, 0.0, 0.0],
            "Band": ["low", "high", "mid", "low", "mid"],
        }
    )


USER_MAPPING = """\
    name: user_claims
    description: A made-up export used by the tests.
    read: {read}
    id_columns: [ClaimNo]
    exclude:
      - {{where: "Status == 'void'", reason: voided}}
    fields:
      claim_id: {{column: ClaimNo, prefix: "U-"}}
      phone: {{column: Phone}}
      line_of_business: {{column: Lob}}
      incident_date: {{column: LossDate}}
      report_date: {{column: Reported, format: "%d/%m/%Y"}}
      settled_amount: {{column: PaidCents, scale: 0.01}}
      legal_representation: {{column: Lawyer, map: {{"Y": true, "N": false}}}}
    extras:
      band: {{column: Band, type: ordinal, order: [low, mid, high], description: "Risk band"}}
    labels:
      fraud_confirmed: {{column: Fraud, map: {{1: true, 0: false}}}}
"""


def load_user(tmp_path: Path, data: str | Path, read: str) -> LoadedClaims:
    return load_claims(data, write_mapping(tmp_path, USER_MAPPING.format(read=read)), settings())


def expected_user_frame(loaded: LoadedClaims) -> None:
    f = loaded.frame
    assert list(f["claim_id"]) == ["U-00017", "U-00018", "U-00020", "U-00021"]
    assert list(f["settled_amount"]) == [1250.5, 0.0, 5000.0, 10.0]
    assert list(f["report_date"]) == [pd.Timestamp(d) for d in ("2024-01-05", "2024-02-10", "2024-03-01", "2024-03-31")]
    assert list(f["legal_representation"]) == [False, True, False, False]
    assert list(f["fraud_confirmed"]) == [False, True, False, False]
    assert list(f["x_band"]) == [0.0, 2.0, 0.0, 1.0]
    assert loaded.excluded == [("voided", 1)] and loaded.type_problems == []


def test_user_mapping_reads_csv_parquet_and_sqlite_to_the_same_frame(tmp_path: Path) -> None:
    import sqlalchemy as sa

    df = user_table()
    df.to_csv(tmp_path / "claims.csv", index=False)
    df.to_parquet(tmp_path / "claims.parquet")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'claims.db'}")
    df.to_sql("claims", engine, index=False)
    engine.dispose()
    from_csv = load_user(tmp_path, tmp_path / "claims.csv", "{format: csv}")
    from_parquet = load_user(tmp_path, tmp_path / "claims.parquet", "{}")
    from_sqlite = load_user(tmp_path, tmp_path / "claims.db", '{format: sql, query: "SELECT * FROM claims"}')
    from_url = load_user(
        tmp_path, None, f'{{url: "sqlite:///{tmp_path / "claims.db"}", query: "SELECT * FROM claims"}}'
    )
    expected_user_frame(from_csv)
    for other in (from_parquet, from_sqlite, from_url):
        pd.testing.assert_frame_equal(other.frame, from_csv.frame)


@pytest.mark.postgres
def test_user_mapping_reads_postgresql_to_the_same_frame(tmp_path: Path) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(PG_URL, connect_timeout=2).close()
    except psycopg2.OperationalError:
        pytest.skip(f"no PostgreSQL answering at {PG_URL}")
    import sqlalchemy as sa

    table = f"claimscore_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg2://"), connect_args={"connect_timeout": 2}
    )
    df = user_table()
    df.to_csv(tmp_path / "claims.csv", index=False)
    try:
        df.to_sql(table, engine, index=False)
        from_pg = load_user(tmp_path, PG_URL, f'{{format: sql, query: "SELECT * FROM {table}"}}')
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
    pd.testing.assert_frame_equal(from_pg.frame, load_user(tmp_path, tmp_path / "claims.csv", "{}").frame)


# --- hashing personal identifiers ---------------------------------------------------------------


def test_personal_ids_are_hashed_deterministically_per_salt(tmp_path: Path) -> None:
    df = user_table()
    df.to_csv(tmp_path / "claims.csv", index=False)
    source = write_mapping(tmp_path, USER_MAPPING.format(read="{}"))
    a1 = load_claims(tmp_path / "claims.csv", source, settings("salt-a")).frame
    a2 = load_claims(tmp_path / "claims.csv", source, settings("salt-a")).frame
    b = load_claims(tmp_path / "claims.csv", source, settings("salt-b")).frame
    salt_a = Identity("salt-a")
    expected = salt_a.hash_value("+44 20 7946 0000", "phone")
    assert list(a1["phone"]) == [
        expected,
        salt_a.hash_value("+44 20 7946 0001", "phone"),
        expected,
        salt_a.hash_value("020 7946 0002", "phone"),
    ]
    assert a1["phone"].equals(a2["phone"])
    assert not (a1["phone"] == b["phone"]).any()
    raw_values = set(df["Phone"].dropna())
    for col in a1.columns:
        assert not a1[col].astype(str).isin(raw_values).any(), col


def test_hash_option_hashes_other_identifiers(tmp_path: Path) -> None:
    pd.DataFrame({"id": ["1", "2"], "nid": ["AB123", "CD456"], "d": ["2024-01-01"] * 2}).to_csv(
        tmp_path / "t.csv", index=False
    )
    source = write_mapping(
        tmp_path,
        """\
        name: t
        fields:
          claim_id: {column: id}
          claimant_id: {column: nid, hash: true}
          line_of_business: {value: travel}
          incident_date: {column: d}
          report_date: {column: d}
        """,
    )
    f = load_claims(tmp_path / "t.csv", source, settings("s")).frame
    identity = Identity("s")
    assert list(f["claimant_id"]) == [identity.hash_value("AB123", "text"), identity.hash_value("CD456", "text")]


# --- the mapping language, feature by feature ---------------------------------------------------

BASE_FIELDS = """\
      claim_id: {row_number: true, prefix: "T-"}
      line_of_business: {value: motor}
"""


def run(tmp_path: Path, table: pd.DataFrame, body: str, fields: str = BASE_FIELDS, dates: bool = True) -> LoadedClaims:
    if dates:
        table = table.assign(D="2024-01-01")
        fields = fields + "      incident_date: {column: D}\n      report_date: {column: D}\n"
    table.to_csv(tmp_path / "t.csv", index=False)
    text = "name: t\nfields:\n" + fields + textwrap.dedent(body)
    return load_claims(tmp_path / "t.csv", write_mapping(tmp_path, text), settings())


def test_week_date_builds_dates_and_rolls_the_report_year(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "Y": [2024, 2024, 2024, 2023, 2024],
            "M": ["Jan", "Jan", "January", "Dec", "Jan"],
            "W": [1, 2, 5, 4, 2],
            "D": ["Monday", "Wednesday", "Friday", "Thursday", "Wed"],
            "RM": ["Jan", "Feb", "Feb", "Jan", "Jan"],
            "RW": [1, 1, 1, 1, 2],
            "RD": ["Tuesday", "Thursday", "Friday", "Tuesday", "Monday"],
        }
    )
    fields = (
        BASE_FIELDS
        + """\
      incident_date: {week_date: {year: Y, month: M, week_of_month: W, day_of_week: D}}
      report_date: {week_date: {month: RM, week_of_month: RW, day_of_week: RD, after: incident_date}}
"""
    )
    loaded = run(tmp_path, table, "", fields, dates=False)
    # January 2024 begins on a Monday; week k is days 7k-6..7k.
    assert list(loaded.frame["incident_date"]) == [
        pd.Timestamp(d)
        for d in (
            "2024-01-01",  # week 1 Monday
            "2024-01-10",  # week 2 (8-14) Wednesday
            "2024-01-31",  # week 5 (29-31: Mon-Wed) has no Friday: the month's last day
            "2023-12-28",  # Dec 2023 week 4 (22-28, from a Friday): Thursday the 28th
            "2024-01-10",
        )
    ]  # week 2 Wednesday
    assert list(loaded.frame["report_date"]) == [
        pd.Timestamp(d)
        for d in (
            "2024-01-02",  # Tuesday of week 1
            "2024-02-01",  # Feb 2024 begins on a Thursday
            "2024-02-02",
            "2024-01-02",  # January after a December accident: next year
            "2024-01-10",
        )
    ]  # Monday 8th is before the Wednesday 10th accident: set equal to it
    assert dict(loaded.adjusted) == {
        "incident_date: weekday past the end of the month (week 5); set to the month's last day": 1,
        "report_date: parts give a date before incident_date in the same month; set equal to incident_date": 1,
    }
    assert datetime(2024, 1, 1).weekday() == 0 and datetime(2023, 12, 22).weekday() == 4


def test_week_date_reports_unreadable_parts(tmp_path: Path) -> None:
    table = pd.DataFrame({"Y": [2024, 2024], "M": ["Jan", "0"], "W": [1, 7], "D": ["Monday", "Funday"]})
    fields = (
        BASE_FIELDS
        + """\
      incident_date: {week_date: {year: Y, month: M, week_of_month: W, day_of_week: D}}
      report_date: {week_date: {year: Y, month: M, week_of_month: W, day_of_week: D}}
"""
    )
    loaded = run(tmp_path, table, "", fields, dates=False)
    assert loaded.frame["incident_date"].isna().tolist() == [False, True]
    problems = {c: (n, ex) for c, n, ex in loaded.type_problems}
    count, examples = problems["incident_date"]
    assert count == 3 and sorted(examples) == ["0", "7", "Funday"]


def test_worst_of_takes_the_worst_recorded_value(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "I1": ["minor injury", "not recorded", "not recorded", "small injury", "bad"],
            "I2": ["severe injury", None, "medium injury", None, None],
            "I3": [None, None, "minor injury", "fatal injury", None],
        }
    )
    loaded = run(
        tmp_path,
        table,
        "",
        BASE_FIELDS
        + """\
      incident_severity:
        worst_of: [I1, I2, I3]
        map: {"minor injury": minor, "small injury": small, "medium injury": medium,
              "severe injury": severe, "fatal injury": fatal, "not recorded": null}
        order: [minor, small, medium, high, severe, fatal]
""",
    )
    assert loaded.frame["incident_severity"].tolist()[:4] == ["severe", np.nan, "medium", "fatal"]
    assert pd.isna(loaded.frame["incident_severity"].iloc[4])
    assert loaded.type_problems == [("incident_severity", 1, ["bad"])]


def test_ordinal_extras_code_by_order_and_report_unknown_values(tmp_path: Path) -> None:
    table = pd.DataFrame({"B": ["none", "1 to 7", "more than 30", None, "extreme"], "R": ["1", "2.5", "x", None, "4"]})
    loaded = run(
        tmp_path,
        table,
        """\
        extras:
          band: {column: B, type: ordinal, order: ["none", "1 to 7", "more than 30"], description: "a band"}
          rating: {column: R, type: float, description: "a number"}
          kind: {column: B, type: category, description: "as text"}
        """,
    )
    f = loaded.frame
    assert f["x_band"].tolist()[:3] == [0.0, 1.0, 2.0] and f["x_band"].iloc[3:].isna().all()
    assert f["x_rating"].tolist()[:2] == [1.0, 2.5] and f["x_rating"].iloc[2:4].isna().all()
    assert f["x_kind"].iloc[4] == "extreme"
    assert sorted(loaded.type_problems) == [("x_band", 1, ["extreme"]), ("x_rating", 1, ["x"])]
    assert loaded.extras["x_band"].order == ("none", "1 to 7", "more than 30")
    assert list(f.columns[-3:]) == ["x_band", "x_rating", "x_kind"]


def test_null_if_and_map(tmp_path: Path) -> None:
    table = pd.DataFrame({"Age": [0, 34, 51, 0], "Police": ["Yes", "No", "Maybe", None], "Sex": ["F", "M", "X", "F"]})
    loaded = run(
        tmp_path,
        table,
        "",
        BASE_FIELDS
        + """\
      claimant_age: {column: Age, null_if: [0]}
      police_report: {column: Police, map: {Yes: true, No: false}}
      claimant_gender: {column: Sex, map: {F: female, M: male}}
""",
    )
    f = loaded.frame
    assert f["claimant_age"].isna().tolist() == [True, False, False, True]
    assert f["claimant_age"].iloc[1] == 34
    assert f["police_report"].tolist()[:2] == [True, False] and f["police_report"].iloc[2:].isna().all()
    # unmapped values are kept for validation to report; type problems come from schema.coerce
    assert f["claimant_gender"].tolist() == ["female", "male", "X", "female"]
    assert loaded.type_problems == [("police_report", 1, ["Maybe"])]


def test_rule_labels_are_null_where_an_input_is_null(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "Fin": ["2024-01-20", "2024-06-01", None, "2024-01-10", "2024-01-15"],
            "Legal": ["N", "N", "N", None, "Y"],
            "Paid": [100, 100, 100, 100, 100],
        }
    )
    loaded = run(
        tmp_path,
        table,
        """\
        labels:
          simple_settlement:
            rule: "settlement_days <= 30 and legal_representation == False and settled_amount <= 1000"
        """,
        BASE_FIELDS
        + """\
      settlement_date: {column: Fin}
      legal_representation: {column: Legal, map: {Y: true, N: false}}
      settled_amount: {column: Paid}
""",
    )
    assert loaded.frame["simple_settlement"].tolist() == [True, False, pd.NA, pd.NA, False]
    assert str(loaded.frame["simple_settlement"].dtype) == "boolean"


def test_exclusions_are_counted_and_row_numbers_keep_their_source_position(tmp_path: Path) -> None:
    table = pd.DataFrame({"Status": ["ok", "void", "test", "void", "ok"], "Amount": [1, 2, -1, -5, 3]})
    loaded = run(
        tmp_path,
        table,
        """\
        exclude:
          - {where: "Status == 'void'", reason: voided}
          - {where: "Amount < 0", reason: negative amount}
        """,
    )
    assert loaded.excluded == [("voided", 2), ("negative amount", 1)]
    assert loaded.frame["claim_id"].tolist() == ["T-1", "T-5"]
    assert loaded.rows_read == 5


# --- bad inputs: one readable line naming the file ---------------------------------------------

VEHICLE_LIKE = "Month,WeekOfMonth\nJan,1\n"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as exc:
        load_claims(tmp_path / "nope.csv", "vehicle_fraud", settings())
    one_line_error(exc, str(tmp_path / "nope.csv"), "no such file")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as exc:
        load_claims(tmp_path, "synthetic", settings())
    one_line_error(exc, str(tmp_path), "directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(DataFileError) as exc:
        load_claims(tmp_path / "e.csv", "vehicle_fraud", settings())
    one_line_error(exc, "e.csv", "empty")


def test_header_without_rows(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("claim_id,line_of_business,incident_date,report_date\r\n")
    with pytest.raises(DataFileError) as exc:
        load_claims(tmp_path / "h.csv", "synthetic", settings())
    one_line_error(exc, "h.csv", "no data rows")


def test_garbage_parquet(tmp_path: Path) -> None:
    (tmp_path / "g.parquet").write_bytes(os.urandom(2048))
    with pytest.raises(DataFileError) as exc:
        load_claims(tmp_path / "g.parquet", "synthetic", settings())
    one_line_error(exc, "g.parquet", "not a readable Parquet file")


def test_latin1_bytes_in_a_utf8_csv(tmp_path: Path) -> None:
    text = (
        "claim_id,line_of_business,incident_date,report_date,region\n"
        "C1,motor,2024-01-01,2024-01-02,Paris\nC2,motor,2024-01-01,2024-01-02,Besançon\n"
    )
    path = tmp_path / "l.csv"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index("ç".encode("latin-1"))
    with pytest.raises(DataFileError) as exc:
        load_claims(path, "synthetic", settings())
    one_line_error(exc, "l.csv", f"byte {offset}", "line 3", "0xe7", "read.encoding")


def test_missing_source_columns_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text(VEHICLE_LIKE)
    with pytest.raises(MappingError) as exc:
        load_claims(tmp_path / "v.csv", "vehicle_fraud", settings())
    one_line_error(exc, "v.csv", "PolicyNumber", "DayOfWeek", "FraudFound_P", "Days_Policy_Accident", "Year")
    assert "WeekOfMonth," not in str(exc.value)


def test_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(MappingError) as exc:
        load_claims("x.csv", "vehicle", settings())
    one_line_error(exc, "'vehicle'", *BUILTIN_SOURCES, "mapping:")


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as exc:
        load_claims("x.csv", f"mapping:{tmp_path / 'none.yaml'}", settings())
    one_line_error(exc, "none.yaml", "does not exist")


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("name: t\nfeilds: {}\n", ["top level", "unknown key 'feilds'", "did you mean 'fields'"]),
        ("name: t\nfields:\n  claim_id: {colum: X}\n", ["fields.claim_id", "unknown key 'colum'", "column"]),
        (
            "name: t\nfields:\n  claimant_ag: {column: Age}\n",
            ["fields.claimant_ag", "unknown canonical field", "claimant_age"],
        ),
        ("name: t\nfields: [claim_id]\n", ["fields: should be key: value pairs", "got list"]),
        ("name: t\nfields:\n  claim_id: {column: [a, b}\n", ["not valid YAML", "line 3"]),
        ("name: t\nfields:\n  claim_id: {column: A}\n  claim_id: {column: B}\n", ["appears twice", "line 4"]),
        ("name: t\nfields:\n  claim_id: {column: A, value: B}\n", ["fields.claim_id", "exactly one of"]),
        ("name: t\nread: {format: xlsx}\n", ["read.format", "'csv'"]),
        ("name: t\nfields:\n  claim_id: {column: A}\n", ["required canonical field(s) not defined", "incident_date"]),
        (
            "name: t\nid_columns: [Pol]\nextras:\n  p: {column: Pol, type: float, description: d}\n",
            ["extras.p", "identifier"],
        ),
        ("- a\n- b\n", ["expected keys"]),
    ],
)
def test_bad_mapping_yaml_is_one_line_naming_the_key(tmp_path: Path, yaml_text: str, needles: list[str]) -> None:
    source = write_mapping(tmp_path, yaml_text, "bad.yaml")
    with pytest.raises(MappingError) as exc:
        load_claims(tmp_path / "x.csv", source, settings())
    one_line_error(exc, "bad.yaml", *needles)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("settlement_days <= 30 and lawyer == False", "unknown name(s) lawyer"),
        ("settlement_days + 1", "true/false"),
        ("settlement_days <=", "not a valid expression"),
    ],
)
def test_bad_rules_name_the_rule(tmp_path: Path, rule: str, needle: str) -> None:
    with pytest.raises(MappingError) as exc:
        run(tmp_path, pd.DataFrame({"A": [1]}), f'labels:\n  simple_settlement: {{rule: "{rule}"}}\n')
    one_line_error(exc, "simple_settlement", rule, needle)


def test_bad_exclusion_names_the_expression(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as exc:
        run(tmp_path, pd.DataFrame({"A": [1]}), 'exclude:\n  - {where: "B == 1", reason: r}\n')
    one_line_error(exc, "B == 1", "t.csv")


def test_missing_default_file_says_how_to_point_at_it(tmp_path: Path) -> None:
    config = Settings(shared_data=tmp_path / "absent")
    with pytest.raises(DataFileError) as exc:
        load_claims(None, "aus_bodily_injury", config)
    one_line_error(exc, str(tmp_path / "absent" / BI.name), "no such file", "shared_data")


def test_database_passwords_stay_out_of_messages(tmp_path: Path) -> None:
    source = write_mapping(tmp_path, USER_MAPPING.format(read='{format: sql, query: "SELECT 1"}'))
    with pytest.raises(DataFileError) as exc:
        load_claims("postgresql://claims:s3cret@127.0.0.1:1/claims", source, settings())
    msg = one_line_error(exc, "claims:***@127.0.0.1:1", "cannot connect")
    assert "s3cret" not in msg


def _missing_file(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "nope.parquet", "synthetic"


def _misspelt_mapping(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "x.csv", write_mapping(tmp_path, "name: t\nfeilds: {}\n", "bad.yaml")


def _no_report_date(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "claims.parquet"
    canonical_claims().drop(columns=["report_date"]).to_parquet(path)
    return path, "synthetic"


@pytest.mark.parametrize(
    ("kind", "make_input"),
    [
        (DataFileError, _missing_file),
        (MappingError, _misspelt_mapping),
        (SchemaError, _no_report_date),
    ],
    ids=["data-file", "mapping", "schema"],
)
def test_each_kind_of_load_error_reaches_the_cli_as_its_one_line_and_exit_code_2(
    cli, tmp_path: Path, kind: type[Exception], make_input
) -> None:
    data, source = make_input(tmp_path)
    with pytest.raises(kind) as exc:
        load_claims(data, source, settings())

    result = cli("validate", "--data", data, "--source", source)

    assert result.code == 2, result.err
    assert result.err_lines == [f"error: {exc.value}"], result.err


# --- scoring new claims: no outcome columns ------------------------------------------------------

OUTCOME_COLUMNS = {
    "vehicle_fraud": ["FraudFound_P"],
    "aus_bodily_injury": ["FinDate", "Legal", "AggClaim"],
}


@pytest.mark.realdata
@pytest.mark.parametrize("source", sorted(OUTCOME_COLUMNS))
def test_scoring_reads_real_claims_without_outcome_columns(shared_data: Path, tmp_path: Path, source: str) -> None:
    from features.data.sources import load_mapping

    real = shared_data / str(load_mapping(source).default_data)
    if not real.is_file():
        pytest.skip(f"{real} absent")
    path = tmp_path / "new_claims.csv"
    pd.read_csv(real, nrows=2_000).drop(columns=OUTCOME_COLUMNS[source]).to_csv(path, index=False)

    loaded = load_claims(path, source, settings(), purpose="score")

    f = loaded.frame
    assert len(f) >= 1_990 and f["claim_id"].is_unique
    for label in schema.LABELS.values():
        assert f[label].isna().all(), label
    for name in loaded.absent:
        assert schema.BY_NAME[name].stage == "outcome" and f[name].isna().all(), name
    assert loaded.absent and set(loaded.expected).isdisjoint(loaded.absent)


@pytest.mark.realdata
def test_training_on_a_table_without_its_label_column_is_one_line(shared_data: Path, tmp_path: Path) -> None:
    if not VEHICLE.is_file():
        pytest.skip(f"{VEHICLE} absent")
    path = tmp_path / "unlabelled.csv"
    pd.read_csv(VEHICLE, nrows=500).drop(columns=["FraudFound_P"]).to_csv(path, index=False)
    with pytest.raises(MappingError) as exc:
        load_claims(path, "vehicle_fraud", settings())
    one_line_error(exc, "fraud_confirmed: the table has no FraudFound_P column, which the mapping's label needs")


def test_scoring_reads_synthetic_claims_without_outcome_columns(tmp_path: Path) -> None:
    outcomes = [c for c in canonical_claims().columns if c in schema.OUTCOMES]
    path = tmp_path / "new.parquet"
    canonical_claims().drop(columns=outcomes).to_parquet(path)

    loaded = load_claims(path, "synthetic", settings(), purpose="score")

    assert loaded.frame["fraud_confirmed"].isna().all() and loaded.frame["simple_settlement"].isna().all()
    assert set(outcomes) - {"simple_settlement"} <= set(loaded.absent)  # the rule's label is computed, null
    assert "claimed_amount" in loaded.expected and not set(loaded.expected) & set(schema.OUTCOMES)


def test_scoring_reads_a_user_table_without_outcome_columns(tmp_path: Path) -> None:
    user_table().drop(columns=["Fraud", "PaidCents", "Lawyer"]).to_csv(tmp_path / "new.csv", index=False)
    source = write_mapping(tmp_path, USER_MAPPING.format(read="{format: csv}"))

    loaded = load_claims(tmp_path / "new.csv", source, settings(), purpose="score")

    f = loaded.frame
    assert list(f["claim_id"]) == ["U-00017", "U-00018", "U-00020", "U-00021"]
    assert f["fraud_confirmed"].isna().all() and f["settled_amount"].isna().all()
    assert sorted(loaded.absent) == ["fraud_confirmed", "legal_representation", "settled_amount"]
    with pytest.raises(MappingError) as exc:  # training needs them
        load_claims(tmp_path / "new.csv", source, settings())
    one_line_error(exc, "PaidCents", "Lawyer", "Fraud")


def test_scoring_still_needs_the_required_fields(tmp_path: Path) -> None:
    user_table().drop(columns=["LossDate", "Fraud"]).to_csv(tmp_path / "new.csv", index=False)
    source = write_mapping(tmp_path, USER_MAPPING.format(read="{format: csv}"))
    with pytest.raises(MappingError) as exc:
        load_claims(tmp_path / "new.csv", source, settings(), purpose="score")
    one_line_error(exc, "new.csv", "LossDate")
    assert "Fraud" not in str(exc.value)


def test_a_source_supplies_what_it_maps_and_what_it_lists(tmp_path: Path) -> None:
    from features.data.sources import load_mapping

    assert "claimed_amount" in load_mapping("synthetic").supplied_fields()
    assert {"deductible", "fraud_confirmed"} <= set(load_mapping("vehicle_fraud").supplied_fields())
    assert "claimed_amount" not in load_mapping("vehicle_fraud").supplied_fields()
    bad = "name: x\nidentity: true\nsupplies: [claimed_amount, claim_amount]\n"
    with pytest.raises(MappingError) as exc:
        load_claims(tmp_path / "x.csv", write_mapping(tmp_path, bad), settings())
    one_line_error(exc, "supplies", "claim_amount")


def test_synthetic_supplies_what_the_generator_writes() -> None:
    from features.data.sources import load_mapping
    from features.data.synthetic import generate_claims

    written = generate_claims(500, seed=3)
    provided = {c for c in written.columns if c in schema.BY_NAME and written[c].notna().any()}
    supplied = set(load_mapping("synthetic").supplied_fields())
    assert supplied - {"simple_settlement"} == provided - {"true_fraud"}  # the label is the mapping's rule
