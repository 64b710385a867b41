"""Stories: reworded and reprinted copies of one piece of news share a story id.

Exact repeats are dropped by de-duplication; what gets through are the copies a reader
still sees as the same news: "UPDATE 1-" and "BREAKING:" prefixes, changed case, a
clause added, a few words changed by another outlet. Texts whose figures differ
("$74", then "$72") are different developments. They share a story when the
shorter one's content words are mostly in the other (containment, not Jaccard, so an
added clause does not make a new story) and make a fair part of the longer one's, among
the stories seen within a horizon of event time. Rewordings that share few words ("Fed
lifts rates" and "Federal Reserve raises borrowing costs") stay apart: this is lexical.

Candidates come from an inverted index over each story's rarest words, so
a message is compared with a handful of stories, not all of them; the index forgets
stories older than the horizon and holds at most `max_stories`. Pure and picklable.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from processors.stream.dedupe import normalised_text

# Wire furniture that says nothing about the story: "UPDATE 2-", "BREAKING:", "EXCLUSIVE".
_FURNITURE = re.compile(
    r"^(?:(?:update|corrected|refile|breaking|exclusive|analysis|instant view|factbox|"
    r"wrapup|timeline|explainer|live|watch|video)\s*\d*\s+)+"
)
_DIGIT = re.compile(r"\d")
_STOP_TEXT = """a an the and or but of to in on at for from by with as is are was were be
been it its this that these those after before over under amid says said say will would
could may might new up down out into than then there their they he she his her we our
you your not no yes so if about more most less what who why how when where which while
has have had do does did just also all any some one two three per vs via"""
_STOPWORDS = frozenset(_STOP_TEXT.split())


def content_words(text: str) -> frozenset[str]:
    """The words that carry a headline's news: normalised, without wire furniture and
    stop words, numbers kept (they tell one figure's story from another's).

    >>> sorted(content_words("UPDATE 1-Boeing's shares PLUNGE after FAA grounds 737 MAX"))
    ['737', 'boeing', 'faa', 'grounds', 'max', 'plunge', 's', 'shares']
    """
    words = _FURNITURE.sub("", normalised_text(text)).split()
    return frozenset(w for w in words if w not in _STOPWORDS)


def story_words(text: str) -> frozenset[str]:
    """The content words that can name a story across outlets and rewordings: no
    figures, none shorter than three letters.

    >>> sorted(story_words("SVB collapse: US regulators seize $209bn lender"))
    ['collapse', 'lender', 'regulators', 'seize', 'svb']
    """
    return frozenset(w for w in content_words(text) if len(w) >= 3 and not _DIGIT.search(w))


def _figures(words: frozenset[str]) -> frozenset[str]:
    """The words with a digit: prices, percentages, counts. Copies of a story carry
    the same figures; a new figure is a new development."""
    return frozenset(w for w in words if _DIGIT.search(w))


@dataclass
class _Story:
    id: str
    words: frozenset[str]
    figures: frozenset[str]  # its words with a digit
    last_seen: datetime
    echoes: int = 0  # copies after the first


@dataclass
class StoryIndex:
    """Assigns each text a story id: an earlier story's, or its own new one.

    >>> from datetime import datetime
    >>> index, t = StoryIndex(), datetime(2024, 3, 14, 14)
    >>> index.assign("a1", "Boeing shares plunge after FAA grounds 737 MAX fleet", t)
    ('a1', 0)
    >>> index.assign("b7", "UPDATE 1-BOEING SHARES PLUNGE AFTER FAA GROUNDS 737 MAX", t)
    ('a1', 1)
    >>> index.assign("c3", "Airbus shares rise as Boeing rival wins order", t)
    ('c3', 0)
    """

    horizon: timedelta = timedelta(hours=24)
    min_containment: float = 0.75  # of the shorter text's content words
    min_shared: int = 3  # words in common, so that two-word headlines stay apart
    min_overlap: float = 0.4  # of the longer text's: a clause added, not a new article
    keys_per_story: int = 4  # index entries per story: its rarest words
    max_stories: int = 50_000
    posting_size: int = 16  # stories kept per indexed word: a message meets a few dozen
    _stories: OrderedDict[str, _Story] = field(default_factory=OrderedDict)  # oldest first
    # word -> the latest `posting_size` story ids indexed under it, oldest first
    _postings: dict[str, list[str]] = field(default_factory=dict)

    def assign(self, message_id: str, text: str, at: datetime) -> tuple[str, int]:
        """(story id, echoes before this copy): the story `text` belongs to at event
        time `at`, learnt from it; a new story is named after `message_id`."""
        self._forget(at)
        words = content_words(text)
        story = self._match(words)
        if story is None:
            story = _Story(message_id, words, _figures(words), at)
            self._stories[story.id] = story
            for word in self._index_words(words):
                ids = self._postings.setdefault(word, [])
                ids.append(story.id)
                if len(ids) > self.posting_size:
                    del ids[0]  # a word that many stories share says little: keep the latest
            return story.id, 0
        story.echoes += 1
        story.last_seen = max(story.last_seen, at)
        self._stories.move_to_end(story.id)
        return story.id, story.echoes

    def __len__(self) -> int:
        return len(self._stories)

    def _match(self, words: frozenset[str]) -> _Story | None:
        if len(words) < self.min_shared:
            return None
        candidates: set[str] = set()
        for word in words:
            candidates.update(self._postings.get(word, ()))
        best: tuple[float, datetime, str] | None = None  # (containment, last seen, id)
        figures = _figures(words)
        for story_id in candidates:
            story = self._stories.get(story_id)
            if story is None:
                continue
            theirs = story.figures
            if figures and theirs and not figures & theirs:
                continue  # "crude below $74", then "crude below $72": news moved on
            shared = len(words & story.words)
            score = shared / min(len(words), len(story.words))
            longer = max(len(words), len(story.words))
            if (
                shared >= self.min_shared
                and score >= self.min_containment
                and shared >= self.min_overlap * longer
            ):
                best = max(
                    best or (score, story.last_seen, story_id), (score, story.last_seen, story_id)
                )
        return self._stories[best[2]] if best else None

    def _index_words(self, words: frozenset[str]) -> list[str]:
        """A story's rarest words (fewest stories indexed under them; long ones first
        among equals): a reprint shares most of them, an unrelated story few."""
        ranked = sorted(words, key=lambda w: (len(self._postings.get(w, ())), -len(w), w))
        return ranked[: self.keys_per_story] if len(ranked) > self.keys_per_story else ranked

    def _forget(self, now: datetime) -> None:
        """Drop stories not seen within the horizon, and the oldest beyond the cap."""
        stories = self._stories
        while stories:
            oldest = next(iter(stories.values()))
            if oldest.last_seen >= now - self.horizon and len(stories) < self.max_stories:
                break
            del stories[oldest.id]
            for word in oldest.words:
                ids = self._postings.get(word)
                if ids is not None and oldest.id in ids:
                    ids.remove(oldest.id)
                    if not ids:
                        del self._postings[word]
