"""Synthetic insurance claims with the patterns an investigations unit sees.

The generator draws claimants, their policies and claims over several years, then plants fraud the
way it happens: opportunistic inflation, claims soon after inception or after a cover increase,
late reporting, amounts just under an adjuster's authority limit, phantom thefts, and rings of
claimants who stage accidents together and share phones, bank accounts, addresses and providers.

Honest noise keeps the problem realistic: genuine claimants also claim early, report late, share a
household address or are paid through their repairer; only a part of the fraud is ever
investigated, investigations follow red flags (not chance), and an investigation finds only some of
the fraud it looks at. Settlement outcomes (fast, unadjusted, undisputed, without lawyers) follow
claim complexity.

Personal identifiers are written as a claim system sends them, raw: phone numbers in the formats
people write them ("+61 412 345 678", "0412 345 678", "(04) 1234-5678"...), addresses with their case,
abbreviations and commas varying, bank accounts as BSB and number with or without separators. A
claimant mostly writes their details one way and sometimes another; ring members write a shared
phone each their own way. Every variant of one identifier normalises to the same value
(:mod:`features.identity`), which is how import and the live API link them.

Everything is vectorised with numpy; a seed fixes every draw (the identifiers' formats come from a
generator of their own, so the rest of a seeded data set is as it was before formats existed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema

DAY = np.timedelta64(1, "D")
AUTHORITY_LIMITS = np.array([2_500.0, 5_000.0, 10_000.0, 25_000.0])
"""Adjusters' settlement authority: amounts above need a senior sign-off."""

REGIONS = np.array(
    [
        "north",
        "south",
        "east",
        "west",
        "central",
        "coast",
        "valley",
        "metro_north",
        "metro_south",
        "metro_east",
        "highlands",
        "islands",
    ]
)
MAKES = np.array(
    [
        "toyota",
        "volkswagen",
        "ford",
        "honda",
        "bmw",
        "kia",
        "hyundai",
        "renault",
        "peugeot",
        "skoda",
        "mercedes",
        "tesla",
        "nissan",
        "mazda",
        "fiat",
    ]
)
VEHICLE_CATEGORIES = np.array(["hatchback", "sedan", "suv", "estate", "sport", "van"])

LOB = np.array(schema.LINES_OF_BUSINESS)  # motor, bodily_injury, home, travel
LOB_P = np.array([0.50, 0.10, 0.25, 0.15])

# incident types per line and their probabilities
INCIDENTS: dict[str, tuple[list[str], list[float]]] = {
    "motor": (
        ["collision", "theft", "vandalism", "glass", "storm", "fire", "liability"],
        [0.60, 0.07, 0.08, 0.14, 0.05, 0.01, 0.05],
    ),
    "bodily_injury": (["injury"], [1.0]),
    "home": (
        ["water", "storm", "theft", "fire", "vandalism", "glass", "liability", "other"],
        [0.35, 0.20, 0.15, 0.05, 0.06, 0.08, 0.05, 0.06],
    ),
    "travel": (["medical", "baggage", "cancellation"], [0.35, 0.35, 0.30]),
}
# median claimed amount by incident type (before severity)
BASE_AMOUNT = {
    "collision": 2_600,
    "theft": 6_000,
    "vandalism": 900,
    "glass": 450,
    "storm": 2_200,
    "fire": 9_000,
    "liability": 3_500,
    "injury": 6_500,
    "water": 3_200,
    "other": 1_200,
    "medical": 1_800,
    "baggage": 700,
    "cancellation": 1_400,
}
SEVERITY = np.array(schema.SEVERITIES)  # minor .. fatal
SEVERITY_P = np.array([0.42, 0.26, 0.18, 0.09, 0.045, 0.005])
SEVERITY_MULT = np.array([0.5, 0.9, 1.6, 3.0, 6.0, 12.0])

CHANNELS = np.array(schema.CHANNELS)
CHANNEL_P = np.array([0.34, 0.26, 0.20, 0.10, 0.08, 0.02])

FRAUD_TYPES = np.array(
    ["none", "inflation", "early", "cover_increase", "late_report", "under_limit", "phantom", "ring"]
)


@dataclass(frozen=True)
class GeneratorConfig:
    claims: int
    seed: int = 0
    start: str = "2021-01-01"
    years: float = 4.0
    base_fraud_rate: float = 0.022
    """Opportunistic fraud among ordinary claimants."""
    dishonest_share: float = 0.025
    """Claimants with a high fraud propensity (they also claim more often)."""
    dishonest_fraud_rate: float = 0.30
    ring_claim_share: float = 0.012
    """Share of claims made by ring members acting as a ring (staged)."""

    def __post_init__(self) -> None:
        if self.claims < 1:
            raise ValueError("claims must be at least 1")
        if self.years <= 0:
            raise ValueError("years must be positive")


STAGES = ("claimants", "claims", "fraud", "policies", "providers and payees", "investigations", "settlements", "table")


def generate_claims(
    claims: int, seed: int = 0, *, on_stage: Callable[[str], None] | None = None, **kwargs
) -> pd.DataFrame:
    """Generate ``claims`` canonical claims (schema columns, schema dtypes), sorted by report time.

    ``on_stage`` is called with the name of each stage as it finishes (for progress bars).
    """
    return _Generator(GeneratorConfig(claims=claims, seed=seed, **kwargs)).run(on_stage or (lambda _: None))


class _Generator:
    def __init__(self, cfg: GeneratorConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.start = np.datetime64(cfg.start, "s")
        self.span_s = int(cfg.years * 365.25 * 86400)
        self.as_of = self.start + np.timedelta64(self.span_s, "s")

    # ------------------------------------------------------------------------------------------
    def run(self, on_stage: Callable[[str], None]) -> pd.DataFrame:
        n = self.cfg.claims
        people = self._claimants(max(3, int(n * 3)))
        on_stage(STAGES[0])
        c = self._assign_claims(n, people)
        self._claim_basics(c, people)
        on_stage(STAGES[1])
        self._plant_fraud(c, people)
        on_stage(STAGES[2])
        self._policies(c, people)
        on_stage(STAGES[3])
        self._identifiers(c, people)
        on_stage(STAGES[4])
        self._investigations(c)
        on_stage(STAGES[5])
        self._settlements(c)
        on_stage(STAGES[6])
        frame = self._frame(c, people)
        on_stage(STAGES[7])
        return frame

    # ------------------------------------------------------------------------------------------
    def _claimants(self, m: int) -> dict[str, np.ndarray]:
        rng = self.rng
        dishonest = rng.random(m) < self.cfg.dishonest_share
        frequency = rng.gamma(1.6, 1.0, m) * np.where(dishonest, 3.0, 1.0)
        age0 = np.clip(rng.normal(44, 15, m), 18, 88)
        birth = self.start - (age0 * 365.25 * 86400).astype("int64").astype("timedelta64[s]")
        region = rng.choice(len(REGIONS), m, p=_normalise(np.linspace(1.6, 0.6, len(REGIONS))))
        # households: some claimants share an address (and sometimes a phone) with another
        address = np.arange(m)
        phone = np.arange(m)
        share = rng.random(m) < 0.12
        partner = rng.integers(0, m, m)
        address[share] = address[partner[share]]
        share_phone = share & (rng.random(m) < 0.3)
        phone[share_phone] = phone[partner[share_phone]]
        # rings: groups of claimants who stage claims together
        n_rings = max(1, int(self.cfg.claims * self.cfg.ring_claim_share / 6))
        ring = np.full(m, -1)
        sizes = rng.integers(3, 11, n_rings)
        members = rng.choice(m, size=min(m, int(sizes.sum())), replace=False)
        ring_of_member = np.repeat(np.arange(n_rings), sizes)[: len(members)]
        ring[members] = ring_of_member
        return {
            "dishonest": dishonest,
            "frequency": frequency,
            "birth": birth,
            "region": region,
            "address": address,
            "phone": phone,
            "account": np.arange(m),
            "ring": ring,
            "gender": rng.choice(3, m, p=[0.49, 0.49, 0.02]),
            "marital": rng.choice(5, m, p=[0.38, 0.45, 0.1, 0.04, 0.03]),
            "n_rings": np.array([n_rings]),
        }

    def _assign_claims(self, n: int, people: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng, cfg = self.rng, self.cfg
        ring_members = np.flatnonzero(people["ring"] >= 0)
        n_ring = min(int(n * cfg.ring_claim_share), n) if len(ring_members) else 0
        claimant = np.empty(n, dtype=np.int64)
        claimant[:n_ring] = rng.choice(ring_members, n_ring)
        claimant[n_ring:] = rng.choice(len(people["frequency"]), n - n_ring, p=_normalise(people["frequency"]))
        is_ring = np.zeros(n, bool)
        is_ring[:n_ring] = True
        order = rng.permutation(n)
        claimant, is_ring = claimant[order], is_ring[order]
        # report times: a mild upward trend and seasonality; ring claims cluster in the ring's
        # active window of 4-14 months
        u = rng.random(n)
        # volume grows linearly over the years: a mix of uniform and a rising density
        t = np.where(rng.random(n) < 0.7, u, np.sqrt(rng.random(n)))
        seasonal = 0.02 * np.sin(2 * np.pi * t * self.cfg.years)
        t = np.clip(t + seasonal, 0, 1)
        ring_id = people["ring"][claimant]
        if n_ring:
            n_rings = int(people["n_rings"][0])
            ring_start = rng.random(n_rings) * 0.9
            ring_len = rng.uniform(120, 420, n_rings) * 86400 / self.span_s
            rr = ring_id[is_ring]
            t[is_ring] = np.clip(ring_start[rr] + rng.random(len(rr)) * ring_len[rr], 0, 0.9999)
        # time of day: office hours mostly; a share of reports late at night
        day = np.floor(t * self.span_s / 86400)
        hour = np.where(rng.random(n) < 0.85, rng.normal(12.5, 2.8, n), rng.uniform(0, 24, n)) % 24
        seconds = (day * 86400 + hour * 3600 + rng.integers(0, 60, n)).astype("int64")
        report = self.start + seconds.astype("timedelta64[s]")
        return {"claimant": claimant, "is_ring": is_ring, "ring": ring_id, "report": report}

    def _claim_basics(self, c: dict[str, np.ndarray], people: dict[str, np.ndarray]) -> None:
        rng = self.rng
        n = len(c["claimant"])
        lob = rng.choice(len(LOB), n, p=LOB_P)
        # ring claims are staged motor accidents or injury claims
        lob[c["is_ring"]] = np.where(rng.random(int(c["is_ring"].sum())) < 0.7, 0, 1)
        incident = np.empty(n, dtype=object)
        for i, line in enumerate(LOB):
            mask = lob == i
            types, p = INCIDENTS[str(line)]
            incident[mask] = rng.choice(types, int(mask.sum()), p=p)
        incident[c["is_ring"] & (lob == 0)] = "collision"
        incident = incident.astype(str)
        severity = rng.choice(len(SEVERITY), n, p=SEVERITY_P)
        injurable = np.isin(incident, ["collision", "injury", "medical", "liability"])
        severity = np.where(~injurable & (severity == 5), 4, severity)  # fatal only with people hurt
        base = np.vectorize(BASE_AMOUNT.__getitem__, otypes=[float])(incident)
        amount = base * SEVERITY_MULT[severity] * rng.lognormal(0, 0.55, n)

        parties = np.ones(n, dtype=np.int64)
        coll = incident == "collision"
        parties[coll] += rng.poisson(0.8, int(coll.sum()))
        inj = incident == "injury"
        parties[inj] += rng.poisson(0.6, int(inj.sum()))
        injured = np.zeros(n, dtype=np.int64)
        injured[coll] = rng.binomial(parties[coll], 0.12)
        injured[inj] = 1 + rng.binomial(parties[inj] - 1, 0.5)
        injured[incident == "medical"] = 1
        amount *= 1 + 0.8 * injured

        p_police = np.select([incident == "theft", coll, inj, incident == "vandalism"], [0.9, 0.45, 0.5, 0.5], 0.08)
        police = rng.random(n) < p_police
        witness = rng.random(n) < np.where(coll | inj, 0.3, 0.08)
        fault = np.full(n, "none", dtype=object)
        k = int((coll | inj).sum())
        fault[coll | inj] = rng.choice(
            ["policyholder", "third_party", "shared", "unknown"], k, p=[0.42, 0.42, 0.11, 0.05]
        )
        delay_days = rng.lognormal(0.6, 1.0, n)
        delay_days[incident == "cancellation"] = rng.uniform(0, 20, int((incident == "cancellation").sum()))
        channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
        c.update(
            lob=lob,
            incident=incident,
            severity=severity,
            amount=amount,
            parties=parties,
            injured=injured,
            police=police,
            witness=witness,
            fault=fault.astype(str),
            delay_days=delay_days,
            channel=channel,
            fraud_type=np.zeros(n, dtype=np.int64),
            cover_increase_days=np.full(n, np.nan),
        )

    def _plant_fraud(self, c: dict[str, np.ndarray], people: dict[str, np.ndarray]) -> None:
        rng, cfg = self.rng, self.cfg
        n = len(c["claimant"])
        dishonest = people["dishonest"][c["claimant"]]
        p = np.where(dishonest, cfg.dishonest_fraud_rate, cfg.base_fraud_rate)
        fraud = (rng.random(n) < p) & ~c["is_ring"]
        kinds = rng.choice(np.arange(1, 7), n, p=[0.32, 0.2, 0.1, 0.1, 0.16, 0.12])
        ft = np.where(fraud, kinds, 0)
        ring_staged = c["is_ring"] & (rng.random(n) < 0.8)
        ft[ring_staged] = 7
        c["fraud_type"] = ft
        amt = c["amount"]

        m = ft == 1  # inflation
        amt[m] *= rng.uniform(1.6, 3.2, int(m.sum()))
        m = ft == 3  # cover increase shortly before the incident
        c["cover_increase_days"][m] = rng.uniform(1, 35, int(m.sum()))
        amt[m] *= rng.uniform(1.3, 2.2, int(m.sum()))
        m = ft == 4  # late report
        c["delay_days"][m] = rng.uniform(20, 150, int(m.sum()))
        m = ft == 5  # just under an authority limit
        lim = AUTHORITY_LIMITS[rng.choice(len(AUTHORITY_LIMITS), int(m.sum()), p=[0.3, 0.35, 0.25, 0.1])]
        amt[m] = lim * (1 - rng.uniform(0.002, 0.06, int(m.sum())))
        m = ft == 6  # phantom theft: nobody saw it, nobody told the police
        c["incident"][m & (c["lob"] == 0)] = "theft"
        c["incident"][m & (c["lob"] == 2)] = "theft"
        c["police"][m] = rng.random(int(m.sum())) < 0.25
        c["witness"][m] = False
        amt[m] *= rng.uniform(1.4, 2.6, int(m.sum()))
        m = ft == 7  # staged: many parties, soft-tissue injuries, clean paperwork
        k = int(m.sum())
        c["parties"][m] = rng.integers(2, 7, k)
        c["injured"][m] = np.minimum(c["parties"][m], rng.integers(1, 5, k))
        c["severity"][m] = rng.choice([1, 2, 3], k, p=[0.45, 0.45, 0.1])
        c["fault"][m] = rng.choice(["third_party", "shared", "policyholder"], k, p=[0.55, 0.25, 0.2])
        c["police"][m] = rng.random(k) < 0.3
        c["witness"][m] = rng.random(k) < 0.45
        amt[m] = rng.lognormal(np.log(6_500), 0.45, k)
        under = m & (rng.random(n) < 0.35)
        lim = AUTHORITY_LIMITS[rng.choice([1, 2], int(under.sum()))]
        amt[under] = lim * (1 - rng.uniform(0.002, 0.05, int(under.sum())))
        # genuine noise that looks like red flags
        honest = ft == 0
        late = honest & (rng.random(n) < 0.035)
        c["delay_days"][late] = rng.uniform(20, 150, int(late.sum()))
        raised = honest & (rng.random(n) < 0.02)
        c["cover_increase_days"][raised] = rng.uniform(1, 35, int(raised.sum()))
        other_raise = honest & ~raised & (rng.random(n) < 0.10)
        c["cover_increase_days"][other_raise] = rng.uniform(36, 900, int(other_raise.sum()))
        c["amount"] = np.round(amt, 2)
        # fraud claims are reported a little more at night and on Mondays
        night = (ft > 0) & (rng.random(n) < 0.12)
        c["report"][night] = c["report"][night].astype("datetime64[D]") + rng.uniform(
            0, 6 * 3600, int(night.sum())
        ).astype("int64").astype("timedelta64[s]")

    def _policies(self, c: dict[str, np.ndarray], people: dict[str, np.ndarray]) -> None:
        rng = self.rng
        incident = c["report"] - (c["delay_days"] * 86400).astype("int64").astype("timedelta64[s]")
        c["incident_at"] = incident
        key = c["claimant"] * len(LOB) + c["lob"]
        pol_keys, pol = np.unique(key, return_inverse=True)
        npol = len(pol_keys)
        first = np.full(npol, np.datetime64("2262-01-01", "s"))
        np.minimum.at(first, pol, incident)
        # early-fraud claims pull their policy's inception to just before the incident, as long as
        # the claim is the policy's first
        early = (c["fraud_type"] == 2) & (incident == first[pol])
        c["fraud_type"][(c["fraud_type"] == 2) & ~early] = 1
        gap = rng.exponential(900, npol) + rng.uniform(0, 60, npol)
        genuine_new = rng.random(npol) < 0.05  # new customers do have accidents early
        gap[genuine_new] = rng.uniform(2, 60, int(genuine_new.sum()))
        early_pol = np.zeros(npol, bool)
        early_pol[pol[early]] = True
        gap[early_pol] = rng.uniform(1, 40, int(early_pol.sum()))
        inception = (first - (gap * 86400).astype("int64").astype("timedelta64[s]")).astype("datetime64[D]")
        last = np.full(npol, np.datetime64("1970-01-01", "s"))
        np.maximum.at(last, pol, incident)
        terms = np.ceil(((last - inception.astype("datetime64[s]")) / DAY + 1) / 365.25).clip(1)
        end = inception + (terms * 365.25).astype("int64").astype("timedelta64[D]")
        # policy money
        lob = pol_keys % len(LOB)
        si_median = np.array([24_000, 150_000, 320_000, 8_000])[lob]
        sum_insured = np.round(si_median * rng.lognormal(0, 0.45, npol), -2)
        deductible = np.array([[0, 250, 500, 1000], [0, 0, 250, 500], [0, 250, 500, 1000], [0, 50, 100, 250]])[
            lob, rng.choice(4, npol, p=[0.1, 0.4, 0.35, 0.15])
        ]
        rate = np.array([0.035, 0.006, 0.0035, 0.03])[lob]
        premium = np.round(sum_insured * rate * rng.lognormal(0, 0.25, npol), 2)
        cover = np.array(
            [
                ["comprehensive", "collision", "liability"],
                ["ctp", "ctp", "ctp"],
                ["combined", "buildings", "contents"],
                ["annual", "single_trip", "single_trip"],
            ]
        )[lob, rng.choice(3, npol, p=[0.6, 0.25, 0.15])]
        c["policy"] = pol
        c["inception"] = inception[pol]
        c["policy_end"] = end[pol]
        c["sum_insured"] = sum_insured[pol]
        raised = ~np.isnan(c["cover_increase_days"])
        c["sum_insured"] = np.where(
            raised & (c["fraud_type"] == 3), np.round(c["sum_insured"] * 1.5, -2), c["sum_insured"]
        )
        c["deductible"] = deductible[pol].astype(float)
        c["premium"] = premium[pol]
        c["cover_type"] = cover[pol]
        c["amount"] = np.minimum(c["amount"], c["sum_insured"])
        inc_cover = incident - (np.nan_to_num(c["cover_increase_days"]) * 86400).astype("int64").astype(
            "timedelta64[s]"
        )
        ok = raised & (inc_cover.astype("datetime64[D]") > c["inception"])
        c["cover_increase"] = np.where(ok, inc_cover.astype("datetime64[D]"), np.datetime64("NaT", "D"))
        # vehicles per motor policy
        c["make"] = MAKES[rng.integers(0, len(MAKES), npol)][pol]
        c["vehicle_cat"] = VEHICLE_CATEGORIES[
            rng.choice(len(VEHICLE_CATEGORIES), npol, p=[0.3, 0.25, 0.25, 0.1, 0.05, 0.05])
        ][pol]
        c["vehicle_age"] = np.round(rng.gamma(2.0, 3.0, npol), 1)[pol]
        # customer tenure: since the claimant's first inception
        m = len(people["frequency"])
        since = np.full(m, np.datetime64("2262-01-01", "D"))
        np.minimum.at(since, c["claimant"], c["inception"])
        c["tenure_years"] = np.round(
            np.maximum((incident.astype("datetime64[D]") - since[c["claimant"]]) / DAY, 0) / 365.25, 2
        )

    def _identifiers(self, c: dict[str, np.ndarray], people: dict[str, np.ndarray]) -> None:
        rng = self.rng
        n = len(c["claimant"])
        m = len(people["frequency"])
        cl = c["claimant"]
        # providers: repairers for motor, clinics for injury and medical, contractors for home
        n_prov = max(5, n // 180)
        ptype = rng.choice(3, n_prov, p=[0.5, 0.25, 0.25])  # 0 repairer, 1 clinic, 2 contractor
        ptype[:3] = (0, 1, 2)  # every kind exists, however small the book
        popularity = rng.pareto(1.6, n_prov) + 1
        corrupt = rng.random(n_prov) < 0.03
        needs = np.select([c["lob"] == 0, (c["lob"] == 1) | (c["incident"] == "medical"), c["lob"] == 2], [0, 1, 2], -1)
        has_provider = (needs >= 0) & (rng.random(n) < np.where(needs == 0, 0.8, 0.7))
        has_provider &= np.isin(c["incident"], ["glass", "cancellation", "baggage"], invert=True) | (needs == 0)
        provider = np.full(n, -1)
        rng.integers(0, len(REGIONS), n_prov)  # an unused draw, kept so that seeded data sets stay as they were
        for t in range(3):
            pool = np.flatnonzero(ptype == t)
            want = has_provider & (needs == t)
            weights = popularity[pool] * np.where(corrupt[pool], 0.6, 1.0)
            provider[want] = pool[rng.choice(len(pool), int(want.sum()), p=_normalise(weights))]
        # fraud leans to corrupt providers; staged ring claims almost always use the ring's own
        n_rings = int(people["n_rings"][0])
        bad = np.flatnonzero(corrupt) if corrupt.any() else np.arange(n_prov)
        ring_provider = bad[rng.integers(0, len(bad), (n_rings, 2))]
        staged = c["fraud_type"] == 7
        pick = rng.integers(0, 2, int(staged.sum()))
        use_ring = rng.random(int(staged.sum())) < 0.75
        provider[staged] = np.where(use_ring, ring_provider[c["ring"][staged], pick], provider[staged])
        opp = (c["fraud_type"] > 0) & (c["fraud_type"] != 7) & (provider >= 0) & (rng.random(n) < 0.2)
        provider[opp] = bad[rng.integers(0, len(bad), int(opp.sum()))]
        c["provider"] = provider
        c["provider_type"] = np.where(
            provider >= 0, np.array(["repairer", "clinic", "contractor"])[ptype[np.maximum(provider, 0)]], ""
        )
        c["corrupt_provider"] = (provider >= 0) & corrupt[np.maximum(provider, 0)]
        # contact details and payee: the claimant's own, but ring members often give the ring's
        phone = people["phone"][cl].copy()
        address = people["address"][cl].copy()
        account = people["account"][cl].copy()
        ring = c["ring"]
        in_ring = ring >= 0
        for arr, p_share, offset in ((phone, 0.55, m), (address, 0.45, 2 * m), (account, 0.6, 3 * m)):
            share = in_ring & (rng.random(n) < np.where(staged, p_share, p_share / 3))
            arr[share] = offset + ring[share]
        # direct payment to the provider (repairer / clinic)
        direct = (provider >= 0) & (rng.random(n) < 0.35)
        account[direct] = 4 * m + provider[direct]
        c["phone"], c["address"], c["account"] = phone, address, account
        c["payee_type"] = np.where(direct, "provider", "claimant")
        c["region"] = np.where(rng.random(n) < 0.9, people["region"][cl], rng.integers(0, len(REGIONS), n))
        ring_region = rng.integers(0, 3, max(1, n_rings))
        c["region"][staged] = ring_region[ring[staged]]
        c["age"] = np.floor((c["incident_at"] - people["birth"][cl]) / np.timedelta64(1, "D") / 365.25).astype(np.int64)

    def _investigations(self, c: dict[str, np.ndarray]) -> None:
        """The SIU investigates on red flags and hunches; it confirms only some of the fraud."""
        rng = self.rng
        n = len(c["claimant"])
        fraud = c["fraud_type"] > 0
        days_in = (c["incident_at"].astype("datetime64[D]") - c["inception"]) / DAY
        score = (
            -3.55
            + 1.3 * (days_in < 60)
            + 0.9 * (c["delay_days"] > 30)
            + 0.6 * (c["parties"] >= 4)
            + 0.5 * (c["amount"] > 15_000)
            + 0.7 * (~np.isnan(c["cover_increase_days"]) & (c["cover_increase_days"] < 40))
            + 0.5 * ((c["incident"] == "theft") & ~c["police"])
            + 0.8 * c["corrupt_provider"]
            + 2.3 * fraud * (rng.random(n) < 0.6)  # an adjuster's hunch that something is off
            + rng.normal(0, 0.6, n)
        )
        investigated = rng.random(n) < 1 / (1 + np.exp(-score))
        found = investigated & fraud & (rng.random(n) < 0.78)
        closed = c["report"] + (rng.uniform(20, 140, n) * 86400).astype("int64").astype("timedelta64[s]")
        decided = closed <= self.as_of
        c["investigated"] = investigated
        c["investigation_closed"] = np.where(investigated & decided, closed, np.datetime64("NaT", "s"))
        c["fraud_confirmed"] = np.where(investigated & ~decided, np.nan, found.astype(float))

    def _settlements(self, c: dict[str, np.ndarray]) -> None:
        """Complex claims take long, need adjusters and attract disputes and lawyers."""
        rng = self.rng
        n = len(c["claimant"])
        complexity = (
            -1.4
            + 1.2 * (c["amount"] > 5_000)
            + 0.8 * (c["amount"] > 15_000)
            + 0.9 * (c["injured"] > 0)
            + 0.5 * (c["parties"] > 2)
            + 0.9 * np.isin(c["fault"], ["shared", "unknown"])
            + 0.6 * (c["severity"] >= 3)
            + 0.4 * (c["lob"] == 1)
            - 0.5 * np.isin(c["incident"], ["glass", "baggage"])
            + 1.5 * c["investigated"]
            + rng.normal(0, 0.6, n)
        )
        p = 1 / (1 + np.exp(-complexity))
        adjuster = rng.random(n) < p
        legal = rng.random(n) < np.clip(0.03 + 0.45 * (c["injured"] > 0) * p + 0.15 * (c["lob"] == 1), 0, 0.9)
        disputed = rng.random(n) < np.clip(0.02 + 0.4 * np.isin(c["fault"], ["shared", "unknown"]) + 0.1 * p, 0, 0.9)
        days = rng.lognormal(np.log(9) + 1.6 * p + 0.5 * adjuster + 0.9 * legal + 0.6 * disputed, 0.5, n)
        days += np.where(c["investigated"], rng.uniform(20, 90, n), 0)
        settled = c["report"] + (days * 86400).astype("int64").astype("timedelta64[s]")
        done = settled <= self.as_of
        declined = c["fraud_confirmed"] == 1
        paid = np.where(declined, 0.0, np.maximum(c["amount"] * rng.uniform(0.7, 1.0, n) - c["deductible"], 0))
        c["settlement"] = np.where(done, settled, np.datetime64("NaT", "s"))
        c["settled_amount"] = np.where(done, np.round(paid, 2), np.nan)
        c["adjuster"], c["legal"], c["disputed"] = adjuster, legal, disputed

    def _formats(self, claimant: np.ndarray, k: int, stream: int) -> np.ndarray:
        """How each claim writes an identifier: mostly its claimant's habit (one of ``k`` formats),
        sometimes another. Drawn from a generator of its own, so the other columns stay as they were."""
        rng = np.random.default_rng([self.cfg.seed, 0x1D, stream])
        habit = (_mix(claimant, stream) % np.uint64(k)).astype(np.int64)
        return np.where(rng.random(len(claimant)) < 0.75, habit, rng.integers(0, k, len(claimant)))

    # ------------------------------------------------------------------------------------------
    def _frame(self, c: dict[str, np.ndarray], people: dict[str, np.ndarray]) -> pd.DataFrame:
        n = len(c["claimant"])
        order = np.argsort(c["report"], kind="stable")

        def o(a: np.ndarray) -> np.ndarray:
            return a[order]

        cols = {
            "claim_id": _ids("C", np.arange(n), 9),
            "policy_id": _ids("P", o(c["policy"]), 8),
            "claimant_id": _ids("K", o(c["claimant"]), 8),
            "line_of_business": o(LOB[c["lob"]]),
            "incident_date": o(c["incident_at"]),
            "report_date": o(c["report"]),
            "policy_start_date": o(c["inception"]),
            "policy_end_date": o(c["policy_end"]),
            "cover_increase_date": o(c["cover_increase"]),
            "sum_insured": o(c["sum_insured"]),
            "deductible": o(c["deductible"]),
            "annual_premium": o(c["premium"]),
            "cover_type": o(c["cover_type"]),
            "claimed_amount": o(c["amount"]),
            "incident_type": o(c["incident"]),
            "incident_severity": o(SEVERITY[c["severity"]]),
            "channel": o(CHANNELS[c["channel"]]),
            "region": o(REGIONS[c["region"]]),
            "fault": o(c["fault"]),
            "number_of_parties": o(c["parties"]),
            "injury_count": o(c["injured"]),
            "police_report": o(c["police"]),
            "witness_present": o(c["witness"]),
            "vehicle_make": o(np.where(c["lob"] == 0, c["make"], "")),
            "vehicle_category": o(np.where(c["lob"] == 0, c["vehicle_cat"], "")),
            "vehicle_age_years": o(np.where(c["lob"] == 0, c["vehicle_age"], np.nan)),
            "claimant_age": o(c["age"]),
            "claimant_tenure_years": o(c["tenure_years"]),
            "claimant_gender": o(np.array(["female", "male", "other"])[people["gender"][c["claimant"]]]),
            "claimant_marital_status": o(
                np.array(["single", "married", "divorced", "widowed", "other"])[people["marital"][c["claimant"]]]
            ),
            "provider_id": o(np.where(c["provider"] >= 0, _ids("V", np.maximum(c["provider"], 0), 6), "")),
            "provider_type": o(c["provider_type"]),
            "payee_account": o(_accounts(c["account"], self._formats(c["claimant"], len(ACCOUNT_FORMATS), 1))),
            "payee_type": o(c["payee_type"]),
            "phone": o(_phones(c["phone"], self._formats(c["claimant"], len(PHONE_FORMATS), 2))),
            "address": o(_addresses(c["address"], self._formats(c["claimant"], len(ADDRESS_FORMATS), 3))),
            "investigated": o(c["investigated"]),
            "investigation_closed_date": o(c["investigation_closed"]),
            "fraud_confirmed": o(c["fraud_confirmed"]),
            "settled_amount": o(c["settled_amount"]),
            "settlement_date": o(c["settlement"]),
            "legal_representation": o(c["legal"]),
            "adjuster_assigned": o(c["adjuster"]),
            "disputed": o(c["disputed"]),
            "true_fraud": o(c["fraud_type"] > 0),
        }
        frame = pd.DataFrame(cols)
        for col in ("vehicle_make", "vehicle_category", "provider_id", "provider_type"):
            frame[col] = frame[col].replace("", np.nan)
        frame["fraud_confirmed"] = frame["fraud_confirmed"].astype("boolean")
        frame = schema.conform(frame)
        return frame.drop(columns=["simple_settlement"])


def _normalise(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    return w / w.sum()


def _ids(prefix: str, values: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"{prefix}{v:0{width}d}" for v in values.tolist()], dtype=object)


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of integer ids: well-spread 64-bit numbers, the same for the same id and salt."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(salt + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _numbered(values: np.ndarray, space: int, multiplier: int) -> tuple[np.ndarray, np.ndarray]:
    """A distinct number below ``space`` for each distinct id (a bijection: ids that differ never
    share a number while there are fewer than ``space`` of them), and the position of each value."""
    assert math.gcd(multiplier, space) == 1, "the multiplier must be coprime to the space (a bijection)"
    uniq, inv = np.unique(values, return_inverse=True)
    rank = np.arange(len(uniq), dtype=np.int64)
    return (rank * multiplier + 12_345_677) % space, inv


def _formatted(base: list, inv: np.ndarray, fmt: np.ndarray, templates: tuple[Callable, ...]) -> np.ndarray:
    """``templates[f](base[i])`` once per distinct (identifier ``i``, format ``f``) pair, broadcast to
    the rows (``inv``: each row's identifier; ``fmt``: its format)."""
    k = len(templates)
    pair, pos = np.unique(inv.astype(np.int64) * k + fmt, return_inverse=True)
    ident, form = pair // k, pair % k
    text = np.empty(len(pair), dtype=object)
    for f, template in enumerate(templates):
        sel = np.flatnonzero(form == f)
        text[sel] = [template(base[i]) for i in ident[sel].tolist()]
    return text[pos]


PHONE_FORMATS = (
    lambda s: f"+61 {s[:3]} {s[3:6]} {s[6:]}",
    lambda s: f"0{s[:3]} {s[3:6]} {s[6:]}",
    lambda s: f"0{s}",
    lambda s: f"+61{s}",
    lambda s: f"(0{s[:1]}) {s[1:5]}-{s[5:]}",
    lambda s: f"61 {s[:3]} {s[3:6]} {s[6:]}",
    lambda s: f"+61 (0){s[:3]} {s[3:6]} {s[6:]}",
)
"""Ways people write one Australian mobile number (``s``: its 9 national digits)."""


def _phones(ids: np.ndarray, fmt: np.ndarray) -> np.ndarray:
    """Mobile numbers 4xx xxx xxx, one per distinct id, written in the claims' formats."""
    numbers, inv = _numbered(ids, 100_000_000, 61_803_397)
    return _formatted([f"4{n:08d}" for n in numbers.tolist()], inv, fmt, PHONE_FORMATS)


STREETS = np.array(
    "Banksia Wattle Acacia Jacaranda Bottlebrush Grevillea Waratah Boronia Kurrajong Ironbark Karri Jarrah "  # noqa: SIM905
    "Station Church Victoria Albert Queen King George Elizabeth William Mary Hill Park High Bridge Mill "
    "Railway Beach Ocean River Lake Forest Valley Ridge Harbour Bay Cliff Heath Orchard Vineyard Cedar Oak "
    "Elm Maple Willow Poplar Ash Birch Laurel Myrtle Hawthorn Heather Clover Fern Ivy Rose Violet".split()
)
STREET_TYPES = (("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Drive", "Dr"), ("Court", "Ct"))
SUBURBS = (
    "Carlton VIC 3053",
    "Fitzroy VIC 3065",
    "Brunswick VIC 3056",
    "Geelong VIC 3220",
    "Ballarat VIC 3350",
    "Newtown NSW 2042",
    "Parramatta NSW 2150",
    "Bondi NSW 2026",
    "Penrith NSW 2750",
    "Wollongong NSW 2500",
    "Newcastle NSW 2300",
    "Fortitude Valley QLD 4006",
    "Toowong QLD 4066",
    "Southport QLD 4215",
    "Townsville QLD 4810",
    "Fremantle WA 6160",
    "Subiaco WA 6008",
    "Joondalup WA 6027",
    "Glenelg SA 5045",
    "Norwood SA 5067",
    "Hobart TAS 7000",
    "Launceston TAS 7250",
    "Braddon ACT 2612",
    "Darwin NT 0800",
)
_ADDRESS_FORMATS = (
    lambda a: f"{a[0]} {a[1]} {a[2]}, {a[4]}",
    lambda a: f"{a[0]} {a[1]} {a[3]} {a[4]}",
    lambda a: f"{a[0]} {a[1]} {a[3]}., {a[5]}",
)
ADDRESS_FORMATS = (
    *_ADDRESS_FORMATS,
    *(lambda a, w=w: w(a).upper() for w in _ADDRESS_FORMATS),
    *(lambda a, w=w: w(a).lower() for w in _ADDRESS_FORMATS),
)
"""Ways one address is written (``a``: house number, street, its type in full and short, suburb
with state and postcode, the same with a comma): street type in full or short, commas or not, as
typed, in capitals or in lower case."""


def _addresses(ids: np.ndarray, fmt: np.ndarray) -> np.ndarray:
    """Street addresses, one per distinct id (house number, street, type, suburb), in the claims' formats."""
    radix = (999, len(STREETS), len(STREET_TYPES), len(SUBURBS))
    numbers, inv = _numbered(ids, int(np.prod(radix)), 7_777_777)
    rest, house = np.divmod(numbers, radix[0])
    rest, street = np.divmod(rest, radix[1])
    suburb, kind = np.divmod(rest, radix[2])
    long, short = (np.array([t[i] for t in STREET_TYPES])[kind].tolist() for i in (0, 1))
    place = np.array(SUBURBS)[suburb]
    comma = np.array(["{}, {} {}".format(*p.rsplit(" ", 2)) for p in SUBURBS])[suburb]
    base = list(zip((house + 1).tolist(), STREETS[street].tolist(), long, short, place.tolist(), comma.tolist()))
    return _formatted(base, inv, fmt, ADDRESS_FORMATS)


BSBS = np.array(
    ["062000", "063010", "032002", "033172", "082001", "083004", "012003", "013006", "732001", "734002", "484799"]
)
"""Bank-state-branch codes (Australian bank routing numbers) accounts are held at."""
ACCOUNT_FORMATS = (
    lambda b: f"{b[0][:3]}-{b[0][3:]} {b[1]}",
    lambda b: f"{b[0]} {b[1]}",
    lambda b: f"{b[0]}{b[1]}",
    lambda b: f"{b[0][:3]}-{b[0][3:]}-{b[1]}",
)
"""Ways one account is written (``b``: BSB, account number)."""


def _accounts(ids: np.ndarray, fmt: np.ndarray) -> np.ndarray:
    """Bank accounts (BSB and an 8-digit account number), one per distinct id, in the claims' formats."""
    numbers, inv = _numbered(ids, 100_000_000, 48_271_009)
    base = list(zip(BSBS[numbers % len(BSBS)].tolist(), [f"{n:08d}" for n in numbers.tolist()]))
    return _formatted(base, inv, fmt, ACCOUNT_FORMATS)
