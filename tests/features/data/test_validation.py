"""The data checks derived from the schema: each planted defect fails with a readable line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.data.validation import ValidationResult, validate_claims
from features.errors import SchemaError, ValidationFailed

ROWS = 300


@pytest.fixture(scope="module")
def raw(valid_claims) -> pd.DataFrame:
    return valid_claims(ROWS, seed=11)


@pytest.fixture()
def claims(raw: pd.DataFrame) -> pd.DataFrame:
    frame, problems = schema.coerce(raw)
    assert problems == []
    return frame


def check(frame: pd.DataFrame, tmp_path: Path, type_problems=(), **kwargs) -> ValidationResult:
    return validate_claims(frame, type_problems, report_dir=tmp_path, name="test-claims", **kwargs)


def only_line(result: ValidationResult) -> str:
    assert not result.success
    assert len(result.lines) == 1, result.lines
    return result.lines[0]


def test_valid_claims_pass_and_the_report_names_the_data(claims, tmp_path):
    result = check(claims, tmp_path)

    assert result.success, result.lines
    assert result.lines == []
    assert all(c.success for c in result.checks)
    assert result.report_path.parent == tmp_path
    assert result.report_path.name.startswith("validation-test-claims-")
    page = result.report_path.read_text(encoding="utf-8")
    assert "test-claims" in page and f"{ROWS:,}" in page and "PASSED" in page
    assert "<script" not in page and "http" not in page  # self-contained
    checked = {(c.column, c.rule) for c in result.checks}
    assert ("claim_id", "must be unique") in checked
    assert ("report_date", "must be on or after incident_date") in checked
    assert ("fraud_confirmed", "true only where investigated is true") in checked


@pytest.mark.parametrize("column", ["claim_id", "report_date"])
def test_missing_required_value_fails(claims, tmp_path, column):
    claims.loc[5, column] = None

    line = only_line(check(claims, tmp_path))

    ref = "row 6" if column == "claim_id" else "claim C-5"
    assert line == f"{column}: must not be null: 1 of {ROWS} rows, e.g. {ref}"


def test_missing_required_column_fails(claims, tmp_path):
    result = check(claims.drop(columns="line_of_business"), tmp_path)

    assert only_line(result) == "line_of_business: must exist: column missing"


def test_negative_amount_fails(claims, tmp_path):
    claims.loc[[3, 9], "claimed_amount"] = [-5.0, -12.5]

    line = only_line(check(claims, tmp_path))

    assert line == f"claimed_amount: must be between 0 and 1000000000: 2 of {ROWS} rows, e.g. -5.0, -12.5"


def test_out_of_range_age_fails(claims, tmp_path):
    claims.loc[4, "claimant_age"] = 7

    line = only_line(check(claims, tmp_path))

    assert line == f"claimant_age: must be between 14 and 110: 1 of {ROWS} rows, e.g. 7"


def test_unknown_category_value_fails(claims, tmp_path):
    claims.loc[[1, 2], "incident_type"] = "flood"

    line = only_line(check(claims, tmp_path))

    assert line.startswith("incident_type: must be one of collision, theft, ")
    assert line.endswith(f": 2 of {ROWS} rows, e.g. flood")


def test_duplicate_claim_id_fails(claims, tmp_path):
    claims.loc[7, "claim_id"] = "C-0"

    line = only_line(check(claims, tmp_path))

    assert line == f"claim_id: must be unique: 2 of {ROWS} rows, e.g. C-0"


def test_incident_before_policy_start_fails(claims, tmp_path):
    claims.loc[0, "incident_date"] = claims.loc[0, "policy_start_date"] - pd.Timedelta(days=10)
    earlier, later = claims.loc[0, "policy_start_date"], claims.loc[0, "incident_date"]

    line = only_line(check(claims, tmp_path))

    assert line == (
        f"incident_date: must be on or after policy_start_date: 1 of {ROWS} rows, "
        f"e.g. {later:%Y-%m-%d} < {earlier:%Y-%m-%d}"
    )


def test_report_before_incident_fails(claims, tmp_path):
    claims.loc[0, "report_date"] = pd.Timestamp("2019-12-31 09:30")

    line = only_line(check(claims, tmp_path))

    incident = claims.loc[0, "incident_date"]
    assert line == (
        f"report_date: must be on or after incident_date: 1 of {ROWS} rows, e.g. 2019-12-31 09:30 < {incident:%Y-%m-%d}"
    )


def test_settlement_before_report_fails(claims, tmp_path):
    row = claims.index[claims["settlement_date"].notna()][0]
    claims.loc[row, "settlement_date"] = claims.loc[row, "report_date"].normalize() - pd.Timedelta(days=2)

    line = only_line(check(claims, tmp_path))

    assert line.startswith(f"settlement_date: must be on or after report_date: 1 of {ROWS} rows, e.g. ")
    assert f"{claims.loc[row, 'settlement_date']:%Y-%m-%d} < " in line


def test_settled_amount_without_settlement_date_fails(claims, tmp_path):
    open_claims = claims["settlement_date"].isna()
    row = claims.index[open_claims][0]
    claims.loc[row, "settled_amount"] = 1234.5

    line = only_line(check(claims, tmp_path))

    assert line == (
        f"settled_amount: must be 0 or empty where settlement_date is missing: "
        f"1 of {int(open_claims.sum())} rows, e.g. 1234.5"
    )


def test_null_rate_above_the_cap_fails(claims, tmp_path):
    claims.loc[claims.index[:30], "claimant_id"] = None  # 10%, the schema allows 5%

    line = only_line(check(claims, tmp_path))

    assert line == f"claimant_id: at most 5% null: 30 of {ROWS} rows"


def test_value_unreadable_as_its_type_fails(raw, tmp_path):
    dirty = raw.copy()
    dirty["claimed_amount"] = dirty["claimed_amount"].astype(object)
    dirty.loc[8, "claimed_amount"] = "abc"
    frame, problems = schema.coerce(dirty)

    result = check(frame, tmp_path, problems)

    assert only_line(result) == f"claimed_amount: must be readable as a number: 1 of {ROWS} rows, e.g. abc"
    page = result.report_path.read_text(encoding="utf-8")
    assert "must be readable as a number" in page and "FAILED" in page


def test_constant_fraud_label_fails(claims, tmp_path):
    claims["fraud_confirmed"] = False

    assert only_line(check(claims, tmp_path)) == "fraud_confirmed: positive rate 0.0% outside 0.05%-50%"


def test_fraud_confirmed_without_investigation_fails(claims, tmp_path):
    row = claims.index[~claims["investigated"].astype(bool)][0]
    claims.loc[row, "fraud_confirmed"] = True

    line = only_line(check(claims, tmp_path))

    assert line == (
        f"fraud_confirmed: true only where investigated is true: 1 of {ROWS} rows, "
        f"e.g. claim {claims.loc[row, 'claim_id']}"
    )


def test_personal_field_values_are_never_shown(claims, tmp_path, monkeypatch):
    age = dataclasses.replace(schema.BY_NAME["claimant_age"], personal=True)  # a personal numeric field
    monkeypatch.setitem(schema.BY_NAME, "claimant_age", age)
    claims.loc[4, "claimant_age"] = 109 + 1234
    phone_problem = ("phone", 1, ["+44 20 7946 0999"])

    result = check(claims, tmp_path, [phone_problem])

    assert result.lines[0] == f"phone: must be readable as id: 1 of {ROWS} rows, values hidden"
    assert result.lines[1] == f"claimant_age: must be between 14 and 110: 1 of {ROWS} rows, values hidden"
    assert all(c.examples == [] for c in result.checks if c.column in ("phone", "claimant_age"))
    page = result.report_path.read_text(encoding="utf-8")
    assert "1343" not in page and "7946" not in page and "values hidden" in page


def test_columns_the_source_lacks_are_not_checked(claims, tmp_path):
    for column in ("claimant_id", "fault", "vehicle_age_years"):
        claims[column] = pd.Series(pd.array([None] * ROWS, dtype=schema.BY_NAME[column].pandas_dtype))

    result = check(claims, tmp_path)

    assert result.success, result.lines
    assert not {c.column for c in result.checks} & {"claimant_id", "fault", "vehicle_age_years"}


def test_null_rate_overrides_apply(claims, tmp_path):
    claims.loc[claims.index[:30], "claimant_id"] = None  # 10%: above the schema's 5%
    claims.loc[claims.index[:3], "vehicle_age_years"] = np.nan  # no cap in the schema

    result = check(claims, tmp_path, null_rates={"claimant_id": 0.2, "vehicle_age_years": 0.0})

    assert only_line(result) == f"vehicle_age_years: must not be null: 3 of {ROWS} rows"
    with pytest.raises(SchemaError, match="claimant_idd"):
        check(claims, tmp_path, null_rates={"claimant_idd": 0.2})


def test_failed_result_raises_with_lines_and_report(claims, tmp_path):
    claims.loc[3, "claimed_amount"] = -1.0
    result = check(claims, tmp_path)

    with pytest.raises(ValidationFailed) as failure:
        result.raise_for_failure()

    assert failure.value.lines == result.lines
    assert failure.value.report_path == str(result.report_path)


def test_checks_import_gx_lazily_and_never_touch_the_network(valid_claims, tmp_path):
    data = tmp_path / "claims.parquet"
    valid_claims(200, seed=2).to_parquet(data)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import features.data.validation as v
        assert "great_expectations" not in sys.modules, "imported at module import time"

        def no_network(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
                raise RuntimeError(f"network access: {{event}} {{args}}")
        sys.addaudithook(no_network)

        import pandas as pd
        from features import schema
        frame, problems = schema.coerce(pd.read_parquet({str(data)!r}))
        result = v.validate_claims(frame, problems, report_dir=Path({str(tmp_path)!r}), name="offline")
        assert result.success, result.lines
        print("ok")
    """)
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("ok")


# --- what the source supplies ---------------------------------------------------------------------


def test_a_supplied_field_the_table_lacks_fails_naming_it(claims, tmp_path):
    for column in ("claimed_amount", "deductible", "cover_increase_date"):
        claims[column] = pd.Series(pd.array([None] * ROWS, dtype=schema.BY_NAME[column].pandas_dtype))
    supplies = ["claim_id", "claimed_amount", "deductible", "region", "vehicle_age_years", "cover_increase_date"]

    result = check(claims, tmp_path, supplies=supplies, absent=["deductible"])

    assert result.lines == [
        "claimed_amount: missing: the source supplies this field, but every value is empty",
        "deductible: missing: the source supplies this field, but the table has no column for it",
    ]
    # a field whose nulls the schema does not cap may be empty ("no cover increase"); required ones
    # have checks of their own
    assert [c.column for c in result.checks if c.rule == "supplied by the source"] == supplies[1:]
    page = result.report_path.read_text(encoding="utf-8")
    assert "claimed_amount: missing" in page and "FAILED" in page


def test_validate_fails_a_canonical_file_without_claimed_amount(cli, tmp_path):
    from features.data.synthetic import generate_claims

    claims = generate_claims(2_000, seed=5)
    path = tmp_path / "claims.parquet"
    claims.drop(columns=["claimed_amount"]).to_parquet(path)

    result = cli("validate", "--data", path, "--source", "synthetic")

    assert result.code == 1, result.err
    named = [line for line in result.err_lines if "claimed_amount" in line]
    assert named == ["  claimed_amount: missing: the source supplies this field, but the table has no column for it"]
    report = Path(result.err.rsplit("report: ", 1)[1].strip())
    assert "claimed_amount: missing" in report.read_text(encoding="utf-8")


def test_validate_new_claims_needs_no_outcome_columns(cli, tmp_path):
    from features.data.synthetic import generate_claims

    claims = generate_claims(2_000, seed=5)
    path = tmp_path / "new.parquet"
    claims.drop(columns=[c for c in claims.columns if c in schema.OUTCOMES]).to_parquet(path)

    assert cli("validate", "--data", path, "--source", "synthetic").code == 1  # as training data: no outcomes
    result = cli("validate", "--data", path, "--source", "synthetic", "--new-claims")
    assert result.code == 0, result.err
    assert "valid: 2,000 claims" in result.out


def test_checks_of_parts_merge_into_the_checks_of_the_whole(claims):
    """A table checked part by part (as monitoring on Dask checks a window) gives the whole table's
    checks: counts added, a null cap judged on the sums (one part alone over the cap, the whole under
    it), examples the first distinct ones in row order, the rows' claims named."""
    from features.data.validation import check_claims, merge_checks, provided_columns

    frame = claims.copy()
    for label in schema.LABELS.values():  # a positive rate is not merged from parts (monitoring blanks labels)
        frame[label] = schema.null_series(schema.BY_NAME[label].pandas_dtype, frame.index)
    frame.loc[[3, 150, 270], "claimed_amount"] = [-5.0, -7.5, -5.0]
    frame.loc[[20, 21], "channel"] = "pigeon"
    frame.loc[[40], "report_date"] = frame.loc[40, "incident_date"] - pd.Timedelta(days=2)
    frame.loc[[250], "claim_id"] = None  # a required value missing: named by its row
    cap = schema.BY_NAME["claimed_amount"].max_null_rate
    nulls = int(cap * len(frame))  # all in the last part: above the cap there, not in the table
    frame.loc[len(frame) - nulls :, "claimed_amount"] = np.nan
    whole = check_claims(frame)
    provided = provided_columns(frame)
    cuts = [0, 100, 200, len(frame)]
    parts = [
        check_claims(frame.iloc[a:b].reset_index(drop=True), provided=provided, first_row=a)
        for a, b in zip(cuts, cuts[1:])
    ]
    assert not next(c for c in parts[-1] if c.column == "claimed_amount" and c.kind == "nulls").success

    merged = merge_checks(parts)

    assert [c.line for c in merged if not c.success] == [c.line for c in whole if not c.success]
    assert [(c.column, c.rule, c.success, c.unexpected_count, c.element_count) for c in merged] == [
        (c.column, c.rule, c.success, c.unexpected_count, c.element_count) for c in whole
    ]
    amount = next(c for c in merged if c.column == "claimed_amount" and c.kind == "values")
    assert amount.examples == ["-5.0", "-7.5"] and amount.unexpected_count == 3


def test_parts_checked_with_different_suites_are_refused(claims):
    from features.data.validation import check_claims, merge_checks

    first = check_claims(claims.iloc[:100])
    other = check_claims(claims.iloc[100:].assign(channel=None))  # checked without channel's checks
    with pytest.raises(ValueError, match="different suites"):
        merge_checks([first, other])
