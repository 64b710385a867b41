"""Story bursts: many negative stories that share one word, spread over several topics.

A crisis that the news files under many topics (a bank's failure in markets, politics,
central banks and company news alike) moves no single topic's negative share, and the
market-wide share hardly, when the stream is mostly other news. What it does make is a
word ("svb") that suddenly names a fair part of the negative stories. Each word of the
window's negative stories is judged by the upper tail of a beta-binomial: its negative
stories k of the window's stories n against the word's learnt share of stories. Only a
word's stories outside its busiest topic count as its burst: a surge in one topic is
that topic's own key's to judge. Many words are judged in each window, so the key's
false-alarm budget is shared among them (Bonferroni: `p_fire` over the words judged).
Scoring (`log_upper_tail`, from the evidence detector) is kept apart from the state and
thresholds (`BurstDetector`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from processors.detection.base import REBASE_SCALE, Assessment, Detector, fading
from processors.detection.evidence import beta_from_share, log_upper_tail
from processors.envelope.message import TopicWindow

_LN10 = math.log(10.0)
_FORGOTTEN = 1e-3  # a word's decayed count below this is dropped from the state


@dataclass
class BurstDetector(Detector):
    """Fires when one word's negative stories, outside its busiest topic, are far more
    than the word's usual share of the window's stories.

    A word is judged when it has at least `min_stories` such stories and they are at
    least `min_ratio` times its usual count; it fires when its tail probability is below
    `p_fire` shared among the words judged in the window. The alert follows that word:
    it recovers when the word's tail probability is above `p_resolve` or its stories
    are back under `resolve_ratio` times its usual.

    A word's usual share is its decayed count of negative stories (all of them, in every
    topic) over the decayed count of the key's stories; for a word never seen, one story
    in `prior_stories` more than the key has seen. The key does not fire before it has
    judged that many stories in all (a warm-up that a thin feed ends too, however short
    the half-life). The true share varies between windows by the spread `rho`
    (intra-window correlation, as in the evidence detector). Every word is learnt from
    every window, but at most `min_ratio` times its usual: a burst teaches little, and a
    word that stays in the news is learnt within weeks (so its alert resolves). Words
    not seen for long are forgotten, and at most `max_words` are kept (the rarest go
    first), so the state stays small.

    >>> from datetime import datetime, timedelta
    >>> def window(day, words):
    ...     start = datetime(2024, 1, 1) + timedelta(days=day)
    ...     return TopicWindow("all", start, start + timedelta(days=1), 150, 20, 130, 0,
    ...                        0.13, 0.0, n_stories=150, n_negative_stories=20,
    ...                        negative_words=words)
    >>> d = BurstDetector(p_fire=1e-3, prior_stories=500)
    >>> calm = {"oil": (2, 0), "stocks": (3, 1), "bank": (1, 0)}
    >>> [d.update(window(day, calm), False).abnormal for day in range(5)]
    [False, False, False, False, False]
    >>> verdict = d.update(window(5, calm | {"svb": (10, 7)}), False)
    >>> verdict.abnormal, verdict.subject, verdict.score > 3
    (True, 'svb', True)
    >>> d.update(window(6, calm | {"svb": (1, 0)}), True).recovered
    True
    """

    score_name: ClassVar[str] = "-log10 p"

    p_fire: float = 1e-3
    p_resolve: float = 0.05
    min_stories: int = 4
    min_ratio: float = 3.0
    resolve_ratio: float = 1.5
    prior_stories: float = 2000.0
    rho: float = 0.005
    half_life_seconds: float = 14 * 86_400.0
    max_words: int = 20_000

    # Decayed sums, kept times `scale` so that ageing them is one multiplication: the
    # true (faded) count is the stored one over `scale`.
    words: dict[str, float] = field(default_factory=dict)  # negative stories per word
    stories: float = 0.0  # stories of the key's windows
    scale: float = 1.0
    seen: int = 0  # stories of every window judged, for the warm-up (not decayed)
    word: str | None = None  # the word of the alert that fires, while it fires
    last_end: datetime | None = None

    def update(self, window: TopicWindow, firing: bool) -> Assessment:
        self._age(window.end)
        n = window.n
        if n <= 0:
            return Assessment(abnormal=False, recovered=False, baseline=0.0, score=0.0)
        if not firing:
            self.word = None
        judged, bursts = 0, []
        for word, (_, spread) in window.negative_words.items():
            if spread < self.min_stories:
                continue
            judged += 1
            share = self.share(word)
            if spread >= self.min_ratio * share * n:
                bursts.append((self._log_tail(share, spread, n), word, spread, share * n))
        threshold = math.log(self.p_fire / max(judged, 1))
        bursts = [burst for burst in bursts if burst[0] < threshold]
        warm = self.seen >= self.prior_stories
        self.seen += n
        abnormal = warm and bool(bursts)
        if abnormal and self.word is None:
            self.word = min(bursts)[1]
        if self.word is not None:
            # The open (or starting) alert's word: its verdict is the alert's.
            spread = window.negative_words.get(self.word, (0, 0))[1]
            share = self.share(self.word)
            expected = share * n
            log_p = self._log_tail(share, spread, n)
            subject = self.word
        else:
            log_p, subject, spread, expected = min(bursts, default=(0.0, "", 0, 0.0))
        recovered = log_p > math.log(self.p_resolve) or spread <= self.resolve_ratio * expected
        self._learn(window, n)
        return Assessment(
            abnormal=abnormal,
            recovered=recovered,
            baseline=expected,
            score=-log_p / _LN10,
            run_counts=(spread, n),
            subject=subject,
        )

    def share(self, word: str) -> float:
        """The word's usual share of the key's stories (negative ones that say it): its
        decayed count over the key's, never below that of a word never seen, one story
        in `prior_stories` more than the key has seen (so rare words are not shrunk to
        zero, nor frequent ones towards it)."""
        unseen = 1.0 / (self.stories / self.scale + self.prior_stories)
        if self.stories <= 0.0:
            return unseen
        return max(self.words.get(word, 0.0) / self.stories, unseen)

    def _log_tail(self, share: float, k: int, n: int) -> float:
        """log P(K >= k) of k of n stories at a usual `share`, spread by `rho`."""
        return log_upper_tail(k, n, *beta_from_share(share, self.rho))

    def _learn(self, window: TopicWindow, n: int) -> None:
        words = self.words
        for word, (stories, _) in window.negative_words.items():
            # At most `min_ratio` times its usual (or what could not be judged): a story
            # that builds up over days does not teach itself as the normal before it
            # bursts, nor a burst in a day, while a word in the news for good is learnt.
            cap = max(self.min_ratio * self.share(word) * n, self.min_stories - 1)
            words[word] = words.get(word, 0.0) + min(stories, cap) * self.scale
        self.stories += n * self.scale
        if len(words) > self.max_words:
            keep = sorted(words, key=words.__getitem__, reverse=True)[: self.max_words]
            self.words = {word: words[word] for word in keep}

    def _age(self, end: datetime) -> None:
        """Decay the counts by the event time since the last window (never backwards)."""
        decay = fading(self.last_end, end, self.half_life_seconds)
        self.last_end = max(self.last_end or end, end)
        if decay == 1.0:
            return
        self.scale /= decay
        if self.scale >= REBASE_SCALE:
            # Now and then, not each window: ageing thousands of words costs.
            scale = self.scale
            self.words = {w: c / scale for w, c in self.words.items() if c >= _FORGOTTEN * scale}
            self.stories /= scale
            self.scale = 1.0
