"""Canonical label sets that users see, and the maps from the training data's ids.

Every model, whatever its own label names, is mapped onto these before its result
reaches the trailer, so windows, detectors and dashboards speak one vocabulary.
"""

from __future__ import annotations

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")

TOPICS: tuple[str, ...] = (
    "analyst_update",
    "central_banks",
    "company_news",
    "treasuries_debt",
    "dividend",
    "earnings",
    "energy_oil",
    "financials",
    "currencies",
    "general_news",
    "metals_materials",
    "ipo",
    "legal_regulation",
    "mergers_acquisitions",
    "macro",
    "markets",
    "politics",
    "personnel_change",
    "stock_commentary",
    "stock_movement",
)

LABELS: dict[str, tuple[str, ...]] = {"topic": TOPICS, "sentiment": SENTIMENTS}

# twitter-financial-news ids: sentiment 0 Bearish, 1 Bullish, 2 Neutral; topic ids
# follow TOPICS' order.
DATASET_LABELS: dict[str, dict[int, str]] = {
    "sentiment": {0: "negative", 1: "positive", 2: "neutral"},
    "topic": dict(enumerate(TOPICS)),
}

# Sentiment as a number in [-1, 1] for window means.
SENTIMENT_VALUE: dict[str, float] = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
