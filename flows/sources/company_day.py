"""A generated day of company news: calm coverage of 30 large companies, then at once a
surge of distinct negative stories on one, one negative story echoed sixty times on
another, and a burst of neutral coverage on a third (docs/entities.md).

What the per-entity keys, the stories and the volume detector are for, in one day, with
headlines a person reads as the day says: `finsentry generate --companies`.
Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flows.sources.demo import CALM_MIX
from flows.sources.demo_text import BANKS, TEMPLATES

# The calm coverage a company gets: its own topics, each sentiment as often as on the
# demo's calm day (CALM_MIX).
CALM_TOPICS = ("company_news", "stock_movement", "earnings", "analyst_update")
# Distinct negative stories: each its own event, in words of its own.
SURGE_STORIES = (
    "{co} shares plunge {pct}% after regulators open a probe into its accounts",
    "{co} halts deliveries after a second safety failure in a week",
    "{co} chief financial officer resigns amid accounting review",
    "{co} cuts {n},000 jobs as orders collapse",
    "{co} suspends its dividend and warns of a {q} loss",
    "Lenders pull credit lines from {co} as its debt is downgraded to junk",
    "{co} faces class action over misleading safety claims",
    "{co} recalls {n}00,000 units over fire risk",
    "{bank} slashes {co} to sell, sees more downside after guidance cut",
    "{co} loses its largest customer, shares tumble",
)
ECHOED_STORY = "{co} recalls contaminated batches as the FDA widens its warning"
ECHO_FORMS = ("{}", "UPDATE 1-{}", "BREAKING: {}", "{}, sources say", "{} - report")
# Thirty large companies, in trouble the first three: a surge, an echo, a burst.
COMPANY_DAY_TICKERS = (
    "BA", "PFE", "NVDA", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "JPM", "XOM",
    "JNJ", "WMT", "PG", "KO", "PEP", "DIS", "NFLX", "INTC", "CSCO", "ORCL",
    "CVX", "MRK", "ABBV", "NKE", "MCD", "COST", "HD", "UNH", "V", "MA",
)  # fmt: skip
BURST_STORY = "{co} to present at {bank} technology conference, {n} of {total}"


@dataclass(frozen=True)
class CompanyDay:
    """The shape of the day: `companies` are (name, ticker), the first three in trouble."""

    day: date
    companies: Sequence[tuple[str, str]]
    calm_hours: float = 4.0
    calm_every_minutes: float = 10.0  # each company, on average
    surge_stories: int = 45  # in 30 minutes
    echoes: int = 60  # in 10 minutes
    burst_items: int = 40  # in about 13 minutes: ten times the usual
    seed: int = 4

    @property
    def opens_at(self) -> datetime:
        return datetime.combine(self.day, time(13, 30), tzinfo=UTC)

    @property
    def trouble_at(self) -> datetime:
        return self.opens_at + timedelta(hours=self.calm_hours)


def generate_company_day(day: CompanyDay) -> list[dict[str, object]]:
    """The day's items (finsentry's input format), in event-time order."""
    rng = random.Random(day.seed)
    (surge, surge_tk), (echo, echo_tk), (burst, burst_tk), *_ = day.companies
    items: list[tuple[datetime, str, str]] = []
    calm_minutes = day.calm_hours * 60 + 60  # coverage goes on through the trouble
    for name, ticker in day.companies:
        at = day.opens_at + timedelta(minutes=rng.uniform(0, day.calm_every_minutes))
        while at < day.opens_at + timedelta(minutes=calm_minutes):
            topic = rng.choice(CALM_TOPICS)
            sentiment = rng.choices(list(CALM_MIX), list(CALM_MIX.values()))[0]
            items.append(
                (at, ticker, _fill(rng, rng.choice(TEMPLATES[topic][sentiment]), name, ticker))
            )
            at += timedelta(minutes=rng.expovariate(1 / day.calm_every_minutes))
    trouble = day.trouble_at
    for i in range(day.surge_stories):
        story = SURGE_STORIES[i % len(SURGE_STORIES)]
        at = trouble + timedelta(seconds=1800 * i / day.surge_stories)
        items.append((at, surge_tk, _fill(rng, story, surge, surge_tk)))
    story = ECHOED_STORY.format(co=echo)
    for i in range(day.echoes):
        copy = ECHO_FORMS[i % len(ECHO_FORMS)].format(story)
        at = trouble + timedelta(seconds=600 * i / day.echoes)
        items.append((at, echo_tk, copy.upper() if i % 7 == 3 else copy))
    for i in range(day.burst_items):
        at = trouble + timedelta(seconds=20 * i)
        text = BURST_STORY.format(co=burst, bank=rng.choice(BANKS), n=i + 1, total=day.burst_items)
        items.append((at, burst_tk, text))
    return [
        {
            "id": f"company-{i}",
            "text": text,
            "source": "newswire",
            "published_at": at.isoformat(),
            "tickers": [ticker],
        }
        for i, (at, ticker, text) in enumerate(sorted(items))
    ]


def _fill(rng: random.Random, template: str, name: str, ticker: str) -> str:
    return template.format(
        co=name,
        tk=ticker,
        pct=rng.choice((3, 4, 6, 8, 11, 14, 18)),
        px=rng.choice((42, 55, 68, 120, 210, 340)),
        q=rng.choice(("Q1", "Q2", "Q3", "Q4")),
        n=rng.randint(2, 9),
        bank=rng.choice(BANKS),
    )
