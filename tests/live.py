"""Live claims scored by the service's own path in this process (no HTTP server): the decision
log, the history store and the case store are written as a running service writes them."""

from __future__ import annotations

from typing import Any

import pandas as pd

BATCH = 100


def score_in_process(settings, claims: pd.DataFrame, key_id: str = "tests") -> tuple[list[dict[str, Any]], list[str]]:
    """Score ``claims`` (canonical rows, sent as a claim system sends them) with a
    :class:`serving.state.ServiceState` of ``settings``; the answers, and the claims that opened a
    case (the first page of the queue)."""
    from pipelines.demo import claim_json
    from serving.request import parse_records
    from serving.state import ServiceState

    service = ServiceState.load(settings)
    try:
        payloads = [claim_json(row) for _, row in claims.iterrows()]
        answers = []
        for i in range(0, len(payloads), BATCH):
            answers += service.score(parse_records(payloads[i : i + BATCH]), payloads[i : i + BATCH], key_id)
        cases = service.casework.cases.list_cases(limit=5).cases if service.casework is not None else []
        return answers, [c.claim_id for c in cases]
    finally:
        service.close()
