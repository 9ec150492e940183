"""Training refuses a table lacking a field its source supplies, naming the field, before fitting."""

from __future__ import annotations


def test_train_refuses_a_canonical_file_without_claimed_amount(cli, tmp_path, synthetic_claims):
    data = tmp_path / "claims.parquet"
    synthetic_claims.drop(columns=["claimed_amount"]).to_parquet(data)
    result = cli("train", "--data", data)
    assert result.code == 1
    assert any(line.strip().startswith("claimed_amount: missing") for line in result.err_lines), result.err
    assert "claimscore-fraud" not in result.out
