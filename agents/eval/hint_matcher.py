"""The hint matcher: a simulated user's hidden intention read as a string lookup.

`HintMatcher` is fitted on the hints users drop in the training split (exact lines, and nearest
neighbour by TF-IDF cosine for lines it has not seen); `matcher_accuracy` says how often it names
the hidden intention of the eval split's users, against chance (the share of the most common
intention). A user whose hints are a fixed table is read like a table. The attacks of
`agents.eval.attacks` use it to choose their strategy; the dialogues it is fitted on are the
users' answers to `ListeningProbe`, which only asks them to go on.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from agents.eval.fast_play import play
from agents.replies.baselines import topic_words, turn_index
from agents.replies.baselines_zh import speaks_chinese, topic_phrases
from sage_gym.scenarios import ScenarioSet, load_split
from sage_gym.simulators import Simulator

History = Sequence[Mapping[str, str]]


def user_word(history: History, rng: np.random.Generator) -> str:
    """One of the user's own words (English) or a quoted clause of theirs (Chinese)."""
    options = topic_phrases(history) if speaks_chinese(history) else topic_words(history)
    return options[int(rng.integers(len(options)))]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。！？])\s*", text) if s.strip()]


def _user_lines(history: History) -> list[str]:
    return [s for m in history[1:] if m["role"] == "user" for s in _sentences(m["content"])]


_TOKEN = re.compile(r"[a-z']+|[\u3400-\u9fff]")


def _tokens(text: str) -> list[str]:
    """Words (English) or characters and character bigrams (Chinese)."""
    units = _TOKEN.findall(text.lower())
    han = [u for u in units if len(u) == 1 and "\u3400" <= u <= "\u9fff"]
    return units + [a + b for a, b in pairwise(han)]


class HintDialogue(NamedTuple):
    user: str  # the scenario id
    intention: str  # its hidden intention
    lines: list[str]  # what the user said after their first message, sentence by sentence


@dataclass
class HintMatcher:
    """Names a user's hidden intention from the lines they say, by lines seen in training.

    `fit` keeps the lines that came from at least `min_users` training users and mostly (at least
    `purity`) from users of one intention: the hints, not a user's own details and not the lines
    every user says. `predict` lets each line of a dialogue vote: a line seen in training votes its
    intention; another votes for its nearest training line's when their TF-IDF cosine is at least
    `min_cosine`. No vote: None."""

    min_users: int = 2
    purity: float = 0.8
    min_cosine: float = 0.5

    def fit(self, dialogues: Iterable[HintDialogue]) -> HintMatcher:
        """`dialogues`: what each training user said (several dialogues of one user count once)."""
        users: dict[str, set[str]] = defaultdict(set)
        labels: dict[str, Counter[str]] = defaultdict(Counter)
        for dialogue in dialogues:
            for line in set(dialogue.lines):
                if dialogue.user not in users[line]:
                    users[line].add(dialogue.user)
                    labels[line][dialogue.intention] += 1
        self.table: dict[str, str] = {}
        for line, counts in labels.items():
            intention, count = counts.most_common(1)[0]
            if len(users[line]) >= self.min_users and count >= self.purity * sum(counts.values()):
                self.table[line] = intention
        self._lines = sorted(self.table)
        documents = [Counter(_tokens(line)) for line in self._lines]
        self._vocabulary = {t: i for i, t in enumerate(sorted({t for d in documents for t in d}))}
        df = np.zeros(len(self._vocabulary))
        for d in documents:
            df[[self._vocabulary[t] for t in d]] += 1
        self._idf = np.log((1 + len(documents)) / (1 + df)) + 1.0
        self._matrix = np.array([self._vector(d) for d in documents]).reshape(len(documents), len(self._vocabulary))
        self._seen: dict[str, str | None] = {}
        return self

    def _vector(self, counts: Mapping[str, int]) -> np.ndarray:
        vector = np.zeros(len(self._vocabulary))
        for t, c in counts.items():
            if t in self._vocabulary:  # a word no hint has cannot bring a line nearer to one
                vector[self._vocabulary[t]] = c
        vector *= self._idf
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def line_intention(self, line: str) -> str | None:
        """The intention a line gives away: its own in the table, else its nearest table line's."""
        if line in self.table:
            return self.table[line]
        if line not in self._seen:
            cosines = self._matrix @ self._vector(Counter(_tokens(line))) if self._lines else np.zeros(0)
            best = int(np.argmax(cosines)) if len(cosines) else -1
            self._seen[line] = self.table[self._lines[best]] if best >= 0 and cosines[best] >= self.min_cosine else None
        return self._seen[line]

    def predict(self, lines: Sequence[str]) -> str | None:
        votes = Counter(i for i in map(self.line_intention, lines) if i is not None)
        return votes.most_common(1)[0][0] if votes else None

    def predict_history(self, history: History) -> str | None:
        return self.predict(_user_lines(history))


class ListeningProbe:
    """Asks the user to go on, in their own words, and does nothing else: no strategy meets any
    intention, so the user keeps dropping hints. The matcher's fitting and test dialogues."""

    name = "listening_probe"
    EN = ("I'm listening. Tell me more about the {topic}.", "Go on, what happened with the {topic} after that?",
          "And the {topic}, how did that go?", "Tell me about the {topic}, if you want to.", "What else about the {topic}?")
    ZH = ("我在听。再说说{topic}吧。", "然后呢？{topic}后来怎么样了？", "{topic}那边，后来怎么样？", "愿意的话，讲讲{topic}。", "关于{topic}，还有什么？")

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self, history: History) -> str:
        lines = self.ZH if speaks_chinese(history) else self.EN
        return lines[turn_index(history) % len(lines)].format(topic=user_word(history, self._rng))


def hint_dialogues(split: str | ScenarioSet, simulator: str | Simulator = "builtin", seeds: Sequence[int] = (0, 1)) -> list[HintDialogue]:
    """What every user of `split` says to `ListeningProbe`, one dialogue per seed."""
    scenarios = load_split(split) if isinstance(split, str) else split
    played = play(ListeningProbe, [(s, seed) for s in scenarios for seed in seeds], simulator, scenarios)
    return [HintDialogue(p.scenario_id, scenarios.get(p.scenario_id).hidden_intention, _user_lines(p.history)) for p in played]


def fit_hint_matcher(split: str = "train", simulator: str | Simulator = "builtin", seeds: Sequence[int] = (0, 1)) -> HintMatcher:
    """A `HintMatcher` fitted on what the users of a training split say."""
    return HintMatcher().fit(hint_dialogues(split, simulator, seeds))


def matcher_accuracy(matcher: HintMatcher, split: str = "eval", simulator: str | Simulator = "builtin", seeds: Sequence[int] = (0,)) -> tuple[float, float]:
    """(accuracy, chance): how often the matcher names a user's hidden intention from what they say
    to `ListeningProbe` (no prediction guesses the most common intention), and the share of the most
    common intention (what always guessing it scores)."""
    dialogues = hint_dialogues(split, simulator, seeds)
    counts = Counter(d.intention for d in dialogues)
    guess = counts.most_common(1)[0][0]
    correct = [(matcher.predict(d.lines) or guess) == d.intention for d in dialogues]
    return float(np.mean(correct)), counts[guess] / len(dialogues)
