"""Headline templates for the demo's synthetic market day, per topic and sentiment.

Companies are fictional; market names (Brent, the Fed) are real so the models see
the vocabulary they were trained on. Placeholders: {co} company, {tk} ticker,
{pct} a percentage, {px} a price, {q} a quarter, {person} a name, {bank} a broker.
"""

from __future__ import annotations

COMPANIES: tuple[tuple[str, str], ...] = (
    ("Northwind Energy", "NWE"),
    ("Halcyon Petroleum", "HPX"),
    ("Vireo Systems", "VIRO"),
    ("Castellan Bank", "CSTL"),
    ("Orbis Retail", "ORBR"),
    ("Quanta Motors", "QMTR"),
    ("Lumen Pharma", "LUPH"),
    ("Greystone Mining", "GRYM"),
    ("Atlas Logistics", "ATLG"),
    ("Meridian Foods", "MRDF"),
    ("Solace Semiconductor", "SOLC"),
    ("Tidewater Air", "TDWA"),
)
PEOPLE: tuple[str, ...] = ("Dana Whitfield", "Marcus Oyelaran", "Priya Raman", "Tom Keller")
BANKS: tuple[str, ...] = ("Goldman Sachs", "Morgan Stanley", "JPMorgan", "Barclays", "UBS")

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "analyst_update": {
        "negative": (
            "{bank} downgrades ${tk} to sell, cuts price target to ${px}",
            "{bank} cuts {co} to underweight on weak demand outlook",
        ),
        "neutral": (
            "{bank} reiterates neutral rating on ${tk}, price target ${px}",
            "{bank} initiates coverage of {co} with equal-weight rating",
        ),
        "positive": (
            "{bank} upgrades ${tk} to buy, raises price target to ${px}",
            "{bank} raises {co} to overweight, sees {pct}% upside",
        ),
    },
    "central_banks": {
        "negative": (
            "Fed signals more rate hikes as inflation stays stubborn",
            "ECB warns of recession risk as it keeps rates on hold",
        ),
        "neutral": (
            "Fed's Powell says policy decisions will depend on incoming data",
            "Bank of England holds rates steady, minutes due next week",
        ),
        "positive": (
            "Fed officials signal rate cuts could begin this year",
            "ECB's Lagarde says inflation is firmly on the way back to target",
        ),
    },
    "company_news": {
        "negative": (
            "{co} recalls {n}00 vehicles over safety defect",
            "{co} halts production at main plant after fire",
        ),
        "neutral": (
            "{co} to open new headquarters in Austin next year",
            "{co} launches updated product line for enterprise customers",
        ),
        "positive": (
            "{co} wins major contract with federal government",
            "{co} unveils new product, orders exceed expectations",
        ),
    },
    "treasuries_debt": {
        "negative": (
            "Treasury yields jump as bond selloff deepens",
            "{co} bonds slide after credit rating cut to junk",
        ),
        "neutral": (
            "10-year Treasury yield little changed ahead of auction",
            "{co} prices $1.5 billion of senior notes due 2031",
        ),
        "positive": (
            "Treasuries rally as investors seek safety, yields fall",
            "{co} bonds gain after rating upgrade by Moody's",
        ),
    },
    "dividend": {
        "negative": (
            "{co} suspends dividend to preserve cash",
            "{co} cuts quarterly dividend by {pct}%",
        ),
        "neutral": (
            "{co} declares quarterly dividend of $0.{n}2 per share",
            "${tk} goes ex-dividend on Friday",
        ),
        "positive": (
            "{co} raises quarterly dividend {pct}%, announces buyback",
            "{co} boosts payout for the tenth straight year",
        ),
    },
    "earnings": {
        "negative": (
            "{co} misses {q} earnings estimates, cuts full-year guidance",
            "${tk} {q} revenue falls short as margins shrink",
        ),
        "neutral": (
            "{co} to report {q} results after the bell on Thursday",
            "{co} {q} EPS $1.{n}0 in line with estimates",
        ),
        "positive": (
            "{co} beats {q} estimates, raises full-year outlook",
            "${tk} {q} earnings top forecasts on strong sales",
        ),
    },
    "energy_oil": {
        "negative": (
            "Oil prices plunge {pct}% as OPEC+ talks collapse",
            "Brent crude tumbles to ${px} on fears of a global supply glut",
            "Oil slumps as US crude inventories surge far more than expected",
            "WTI crude crashes below ${px} as demand outlook darkens",
            "Energy stocks sink as oil prices extend steep losses",
            "Crude collapse wipes out refining margins at {co}",
            "Oil heads for worst week in a year on recession fears",
            "Crude prices sink again as OPEC+ unity breaks down",
        ),
        "neutral": (
            "Oil prices steady ahead of OPEC+ meeting",
            "Brent crude little changed at ${px} a barrel",
            "EIA weekly crude inventory report due at 10:30 ET",
        ),
        "positive": (
            "Oil prices rise as OPEC+ agrees to extend output cuts",
            "Brent crude climbs to ${px} on strong demand from China",
        ),
    },
    "financials": {
        "negative": (
            "{co} shares slide as loan losses mount",
            "Regional bank stocks fall on deposit outflow worries",
        ),
        "neutral": (
            "{co} completes annual stress test, results due in June",
            "Banks report mixed lending activity in latest survey",
        ),
        "positive": (
            "{co} posts record trading revenue, shares rise",
            "Bank stocks rally as net interest income beats forecasts",
        ),
    },
    "currencies": {
        "negative": (
            "Yen slumps to a 30-year low against the dollar",
            "Euro falls sharply as growth worries mount",
        ),
        "neutral": (
            "Dollar steady against major currencies ahead of jobs data",
            "EUR/USD trades at 1.08 in quiet session",
        ),
        "positive": (
            "Euro jumps after strong German factory data",
            "Sterling rallies to a two-month high against the dollar",
        ),
    },
    "general_news": {
        "negative": (
            "Storm forces closure of major ports along the Gulf coast",
            "Cyberattack disrupts payment systems across Europe",
        ),
        "neutral": (
            "What to watch in the markets this week",
            "Five things you need to know before the open",
        ),
        "positive": (
            "Consumer confidence brightens as holiday season nears",
            "Travel demand hits a record high this summer",
        ),
    },
    "metals_materials": {
        "negative": (
            "Copper prices slide as China demand weakens",
            "{co} shares drop after mine output falls {pct}%",
        ),
        "neutral": (
            "Gold holds near $2,300 an ounce ahead of Fed minutes",
            "Silver little changed in thin trading",
        ),
        "positive": (
            "Gold hits record high as investors seek safety",
            "Copper jumps to a one-year high on supply disruptions",
        ),
    },
    "ipo": {
        "negative": (
            "{co} postpones IPO citing market volatility",
            "${tk} falls {pct}% below IPO price in trading debut",
        ),
        "neutral": (
            "{co} files for US IPO, sets terms for share offering",
            "{co} expected to price IPO on Wednesday",
        ),
        "positive": (
            "{co} soars {pct}% in Nasdaq debut after upsized IPO",
            "{co} IPO priced above range on strong demand",
        ),
    },
    "legal_regulation": {
        "negative": (
            "SEC charges {co} with misleading investors",
            "{co} fined $400 million by EU antitrust regulators",
        ),
        "neutral": (
            "SEC proposes new disclosure rules for private funds",
            "{co} to testify before Senate committee next week",
        ),
        "positive": (
            "{co} wins appeal, court overturns patent ruling",
            "Regulators approve {co} drug, clearing way for launch",
        ),
    },
    "mergers_acquisitions": {
        "negative": (
            "{co} deal collapses after regulators block merger",
            "{co} shareholders reject takeover offer",
        ),
        "neutral": (
            "{co} in talks to acquire a rival, sources say",
            "{co} explores strategic options including a sale",
        ),
        "positive": (
            "{co} agrees to be acquired at {pct}% premium, shares jump",
            "{co} to buy rival in $6 billion deal that boosts earnings",
        ),
    },
    "macro": {
        "negative": (
            "US jobless claims jump to highest level in a year",
            "Euro zone economy contracts as manufacturing slumps",
        ),
        "neutral": (
            "US retail sales data due Tuesday; economists expect 0.3% gain",
            "China's trade data in line with forecasts",
        ),
        "positive": (
            "US economy adds 300,000 jobs, beating expectations",
            "GDP growth accelerates to 3% in the second quarter",
        ),
    },
    "markets": {
        "negative": (
            "Stocks tumble as Wall Street's selloff deepens",
            "Global markets slide on growth fears",
        ),
        "neutral": (
            "US stock futures flat ahead of key inflation data",
            "European shares open little changed",
        ),
        "positive": (
            "S&P 500 closes at record high led by tech",
            "Stocks rally as investors cheer cooling inflation",
        ),
    },
    "politics": {
        "negative": (
            "Government shutdown looms as budget talks stall",
            "Trade tensions escalate as new tariffs announced",
        ),
        "neutral": (
            "Senate to vote on infrastructure bill next week",
            "Leaders meet in Brussels for annual summit",
        ),
        "positive": (
            "Lawmakers reach bipartisan deal to avert shutdown",
            "Trade deal signed, easing tariffs on key goods",
        ),
    },
    "personnel_change": {
        "negative": (
            "{co} CEO {person} resigns amid accounting probe",
            "{co} CFO departs abruptly, shares fall",
        ),
        "neutral": (
            "{co} names {person} as chief operating officer",
            "{co} appoints {person} to its board of directors",
        ),
        "positive": (
            "{co} shares rise after hiring {person} as new CEO",
            "{co} taps industry veteran {person} to lead turnaround",
        ),
    },
    "stock_commentary": {
        "negative": (
            "Why I'm selling ${tk} before it's too late",
            "${tk} looks overvalued, avoid for now",
        ),
        "neutral": (
            "Is ${tk} a buy at these levels? Here's what to consider",
            "Three things to watch in ${tk} this week",
        ),
        "positive": (
            "Why ${tk} could be a long-term winner",
            "${tk} is my top pick for the next decade",
        ),
    },
    "stock_movement": {
        "negative": (
            "${tk} shares drop {pct}% in early trading",
            "{co} stock falls to a 52-week low",
        ),
        "neutral": (
            "${tk} shares little changed in premarket",
            "{co} stock trades flat after the open",
        ),
        "positive": (
            "${tk} shares jump {pct}% to an all-time high",
            "{co} stock climbs {pct}% after upbeat forecast",
        ),
    },
}
