"""The pre-aggregated cells kept up to date change by change (no I/O): after any sequence of
claims and policies added and changed, and of valuations moved on or back, every query
answers exactly what aggregating the final facts from scratch at the final valuation answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from services.insights.aggregates import Aggregates, ClaimFacts, ExposureFacts
from services.insights.service import quarter_start
from services.insights.statistics import experience, published

K = 3
FIRST_VALUATION = datetime(2026, 2, 1, tzinfo=UTC)
QUERIES = [((), {}), (("industry",), {}), (("industry", "category"), {}),
           (("period",), {}), (("category",), {"period": "2026Q1"}),
           (("region", "attack_vector"), {}), (("size_band",), {"industry": "finance"}),
           (("industry", "source"), {})]


def a_claim(rng: random.Random) -> ClaimFacts:
    paid = rng.choice([0, 0, rng.randint(1, 500_000_00)])
    reserve = rng.choice([0, rng.randint(1, 300_000_00)])
    return ClaimFacts(
        org_id=f"org-{rng.randrange(30)}",
        dimensions={"industry": rng.choice(["finance", "telecom", "internet"]),
                    "region": rng.choice(["CN-GD", "CN-BJ"]), "size_band": rng.choice(["1-49", "1000+"]),
                    "category": rng.choice(["ransomware", "ddos", "data_breach"]),
                    "attack_vector": rng.choice(["phishing", "rdp", "unknown"]),
                    "period": rng.choice(["2026Q1", "2026Q2"]),
                    "source": rng.choice(["live", "live", "history"])},
        paid=paid, incurred=paid + reserve, case_reserve=reserve,
        to_dispatch=rng.choice([None, rng.randint(1, 10**10)]),
        to_containment=rng.choice([None, rng.randint(1, 10**11)]),
        to_payment=rng.choice([None, rng.randint(1, 10**12)]),
        outage_seconds=rng.choice([None, rng.randint(0, 10**6)]))


def an_exposure(rng: random.Random, org: str) -> list[ExposureFacts]:
    dimensions = {"industry": rng.choice(["finance", "telecom", "internet"]),
                  "region": rng.choice(["CN-GD", "CN-BJ"]), "size_band": rng.choice(["1-49", "1000+"]),
                  "source": rng.choice(["live", "live", "history"])}
    return [ExposureFacts(org_id=org, seconds=rng.randint(1, 60 * 86_400),
                          annual_premium=rng.randint(1_000_00, 90_000_00),
                          start=quarter_start(period) + timedelta(seconds=rng.randint(0, 30 * 86_400)),
                          dimensions={**dimensions, "period": period})
            for period in rng.sample(["2026Q1", "2026Q2"], rng.randint(0, 2))]


def test_changes_applied_one_by_one_answer_what_the_final_facts_answer() -> None:
    rng = random.Random(5)
    aggregates = Aggregates(FIRST_VALUATION, kept=4)  # some groupings dropped, built again
    claims: dict[int, ClaimFacts] = {}
    exposures: dict[str, list[ExposureFacts]] = {}
    for query, filters in QUERIES[:3]:  # some groupings built early, the rest after the changes
        published(aggregates, query, filters, K)
    for step in range(600):
        if rng.random() < 0.05:  # a new valuation date: later, or back (another clock)
            aggregates.revalue(FIRST_VALUATION + timedelta(days=rng.randint(-40, 160)))
        elif rng.random() < 0.3:
            policy = f"P-{rng.randrange(40)}"
            exposures[policy] = an_exposure(rng, f"org-{rng.randrange(30)}")
            aggregates.replace_exposure(policy, exposures[policy])
        else:
            claim_id = rng.randrange(150)  # a new claim, or a change to one
            claims[claim_id] = a_claim(rng)
            aggregates.replace_claim(claim_id, claims[claim_id])
        if step % 100 == 99:
            facts = [row for rows in exposures.values() for row in rows]
            for group_by, filters in QUERIES:
                assert published(aggregates, group_by, filters, K) == \
                    experience(list(claims.values()), facts, group_by, filters, K,
                               aggregates.valuation), (group_by, step)
