"""Comparing two monitoring summaries (a window made on Dask against one made in one process): what
they found is compared, figure by figure; when and from what they were made is not."""

from __future__ import annotations

import copy

from monitoring.monitor import summary_differences

SUMMARY = {
    "generated_at": "2026-12-03T18:00:00+00:00",
    "window": {"claims": 8006, "source": "synthetic table claims.parquet", "as_of": "2024-11-22"},
    "drift": {"features": [{"feature": "claimed_amount", "statistic": 1.0844166193140596, "drifted": True}]},
    "quality": {"failed": ["claimed_amount: must be between 0 and 1000000000: 3 of 8006 rows"], "report": "a.html"},
}


def changed(**edits) -> dict:
    out = copy.deepcopy(SUMMARY)
    for path, value in edits.items():
        *parents, key = path.split("__")
        node = out
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[key] = value
    return out


def test_what_says_when_and_from_what_is_not_compared():
    other = changed(
        generated_at="2026-12-04T00:00:00+00:00", window__source="parts (on Dask)", quality__report="b.html"
    )
    assert summary_differences(other, SUMMARY) == []


def test_floats_agree_within_the_tolerance_only():
    assert summary_differences(changed(drift__features__0__statistic=1.0844166193140596 * (1 + 1e-12)), SUMMARY) == []
    moved = changed(drift__features__0__statistic=1.0844166193140596 * (1 + 1e-6))
    assert [d.split(":")[0] for d in summary_differences(moved, SUMMARY)] == ["summary.drift.features[0].statistic"]


def test_a_count_a_verdict_a_line_or_a_missing_row_is_a_difference():
    assert summary_differences(changed(window__claims=8005), SUMMARY) == ["summary.window.claims: 8005 != 8006"]
    assert summary_differences(changed(drift__features__0__drifted=False), SUMMARY)
    assert summary_differences(changed(quality__failed=[]), SUMMARY)
    assert summary_differences(changed(drift__features=[]), SUMMARY)
    assert summary_differences(changed(window__extra="x"), SUMMARY)
