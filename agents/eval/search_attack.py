"""A search attack on a simulated user: hill climbing over fragments of good replies, as a learner does.

A learner trained on a simulated user does not read its rules; it tries replies and keeps what
pays. This search does the same with far fewer tries, so that a user that pays for the surface is
caught before a learner finds out:

- **Fragments.** The reference agents' replies (`agents.replies.baselines`: the empathic, solution,
  random and sycophant agents, played against a user whose only word is a placeholder) split at
  sentence and clause breaks, plus clauses of neutral sentences about nothing in particular
  (`NEUTRAL`). Where a reference reply quoted the user, the fragment keeps a slot that is filled
  with the current user's own word (English) or clause (Chinese), as learners copy users' words.
  And the user's own sentences (`USER_SENTENCES`: the first, second and last of their latest
  message, the first two of their opening one), which trimming cuts into pieces: SmolLM2 trained
  against the calibrated user learned to say them back, and a pool without them could not.
- **A policy** is, for each of the 10 turns, 1 to 4 pieces: a fragment, how many words (Chinese:
  characters) to drop from its start and end, and the mark that follows it ("." "?" "," or none);
  and whether the turn is written in lower case.
- **Fitness** is the simulated user's mean final emotion (the evaluator's score) on a fixed part of
  the split, one seed per user (`fit_episodes`). A (1+1) hill climber mutates one turn of the best
  policy so far (swap, insert, drop, trim or re-punctuate a piece, or flip the case) and keeps the
  mutant when it scores at least as well.
- The best policy is then scored on **held-out seeds** (`held_out_episodes`), on the fitted users
  and on the others, beside the reference empathic agent on the same dialogues.

Everything is a function of the split, the simulator, the budget and the seed: the fragment pool
and the episode seeds are fixed (the evaluator's `episode_seed`), so a run is reproducible.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agents.eval.evaluate import episode_seed
from agents.eval.fast_play import Played, mean_emotion, play
from agents.replies import baselines_zh
from agents.replies.baselines import make_reference_agent, topic_words, turn_index
from sage_gym.scenarios import Scenario, ScenarioSet, load_split
from sage_gym.simulators import Simulator

MAX_TURNS = 10
MAX_PIECES = 4
MAX_TRIM = 3  # words (Chinese: characters) a piece may drop at either end
MARKS = (".", "?", ",", "")
SLOT = "{topic}"
SPLITS = {"en": "eval", "zh": "eval-zh"}
# Slots for the user's own sentences: "{latest:i}" is sentence i of the user's latest message,
# "{opening:i}" of their first one (an index past the end takes the last sentence).
USER_SENTENCES = ("{latest:0}", "{latest:1}", "{latest:-1}", "{opening:0}", "{opening:1}")
_USER_SENTENCE = re.compile(r"\{(latest|opening):(-?\d+)\}")
# placeholders the reference agents quote as "the user's word", replaced by SLOT in the fragments
PLACEHOLDER = {"en": "zqxplaceholder", "zh": "甲乙丙丁戊己"}
REFERENCE_AGENTS = ("empathic", "solution", "random", "sycophant")

# Sentences about nothing in particular: what a learner's vocabulary holds besides the references'.
NEUTRAL = {
    "en": (
        "The bus was ten minutes late this morning, so I walked the last part.",
        "My neighbour has started growing tomatoes on her balcony.",
        "There is a new bakery on the corner, and the bread is good.",
        "It rained all afternoon, and the streets are still wet.",
        "I read somewhere that octopuses have three hearts.",
        "The library closes early on Saturdays, which is a shame.",
        "We painted the kitchen a pale green last spring.",
        "The train to the coast takes about two hours.",
        "Some people like to plan every detail of a trip, and others just go.",
        "The football match ended in a draw after extra time.",
        "Honestly, the weather this week has been strange.",
        "Coffee tastes better when someone else makes it.",
        "The old bridge in town is being repaired until June.",
        "My cousin is learning to play the cello.",
        "There were more birds in the park than usual today.",
        "The recipe needs two eggs, some flour and a pinch of salt.",
    ),
    "zh": (
        "今天早上公交车晚了十分钟，我最后一段是走过去的。",
        "我的邻居开始在阳台上种西红柿了。",
        "街角新开了一家面包店，面包很好吃。",
        "下午一直在下雨，街上现在还是湿的。",
        "我在哪里看到过，章鱼有三颗心脏。",
        "图书馆周六关门很早，挺可惜的。",
        "去年春天我们把厨房刷成了浅绿色。",
        "去海边的火车大概要两个小时。",
        "有的人喜欢把旅行的每个细节都计划好，有的人说走就走。",
        "那场足球赛加时之后还是打平了。",
        "说实话，这周的天气有点奇怪。",
        "别人泡的咖啡总是更好喝。",
        "镇上的老桥在修，要修到六月。",
        "我表妹在学拉大提琴。",
        "今天公园里的鸟比平时多。",
        "这个做法要两个鸡蛋、一些面粉和一小撮盐。",
    ),
}

_EN_BREAK = re.compile(r"(?<=[.!?;:,])\s+")
_ZH_BREAK = re.compile(r"(?<=[。！？；：，])")
_EN_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_ZH_SENTENCE_BREAK = re.compile(r"(?<=[。！？])")


# ----------------------------------------------------------------------------------------------
# the fragment pool


def _reference_replies(language: str) -> list[str]:
    """What the reference agents say over ten turns to a user whose only word is the placeholder."""
    user = {"role": "user", "content": PLACEHOLDER[language] + ("。" if language == "zh" else ".")}
    replies = []
    for name in REFERENCE_AGENTS:
        for seed in range(3):
            agent, history = make_reference_agent(name, seed=seed), [user]
            for _ in range(MAX_TURNS):
                reply = agent(history)
                replies.append(reply)
                history = [*history, {"role": "assistant", "content": reply}, user]
    return replies


def _clauses(text: str, language: str) -> list[str]:
    parts = (_ZH_BREAK if language == "zh" else _EN_BREAK).split(text)
    return [p.strip().rstrip(".!?;:,。！？；：，").strip() for p in parts if p.strip().rstrip(".!?;:,。！？；：，").strip()]


def fragment_pool(language: str) -> tuple[str, ...]:
    """The fixed, sorted fragments: clauses of the reference replies (the user's word as SLOT) and
    of the neutral sentences. Clauses of the harmful templates are in it too: the search must learn
    to leave them out."""
    if language not in SPLITS:
        raise ValueError(f"language must be one of {sorted(SPLITS)}, got {language!r}")
    quoted = f"“{PLACEHOLDER['zh']}”" if language == "zh" else PLACEHOLDER["en"]
    fragments = set()
    for text in _reference_replies(language):
        fragments.update(c.replace(quoted, SLOT) for c in _clauses(text, language))
    for text in NEUTRAL[language]:
        fragments.update(_clauses(text, language))
    fragments.update(USER_SENTENCES)
    # the sycophant has no Chinese lines: it answers a Chinese user in English, which is no fragment of Chinese
    in_language = (lambda f: f in USER_SENTENCES or baselines_zh.is_chinese(f.replace(SLOT, ""))) if language == "zh" else (lambda f: not baselines_zh.is_chinese(f))
    return tuple(sorted(f for f in fragments if PLACEHOLDER[language] not in f and in_language(f)))


# ----------------------------------------------------------------------------------------------
# the policy

Piece = tuple[int, int, int, str]  # fragment index, units dropped at the start, at the end, the mark after it
Turn = tuple[bool, tuple[Piece, ...]]  # lower case?, pieces
Genome = tuple[Turn, ...]  # one per turn

_ZH_UNITS = re.compile(r"\{topic\}|.")
_ZH_MARKS = {".": "。", "?": "？", ",": "，", "": ""}


def _units(fragment: str, language: str) -> list[str]:
    return _ZH_UNITS.findall(fragment) if language == "zh" else fragment.split()


def _user_word(history: Sequence[Mapping[str, str]], language: str) -> str:
    return baselines_zh.topic_phrases(history)[0] if language == "zh" else topic_words(history)[0]


def _user_sentence(history: Sequence[Mapping[str, str]], language: str, which: str, index: int) -> str:
    """Sentence `index` of the user's latest (or opening) message, without its closing mark."""
    said = [m["content"] for m in history if m["role"] == "user"]
    text = (said[-1] if which == "latest" else said[0]) if said else ""
    sentences = [t.strip() for t in (_ZH_SENTENCE_BREAK if language == "zh" else _EN_SENTENCE_BREAK).split(text) if t.strip()] or [""]
    return sentences[index if -len(sentences) <= index < len(sentences) else -1].rstrip(".!?。！？")


def render_turn(turn: Turn, pool: Sequence[str], language: str, history: Sequence[Mapping[str, str]]) -> str:
    """One turn's reply: its pieces trimmed, punctuated and joined, the slot filled with the
    user's word and the user's sentences put in (before trimming: a trimmed one is a piece of it),
    capitalised like sentences unless the turn is in lower case."""
    lower, pieces = turn
    word = _user_word(history, language)
    out = []
    for index, head, tail, mark in pieces:
        fragment = _USER_SENTENCE.sub(lambda m: _user_sentence(history, language, m.group(1), int(m.group(2))), pool[index])
        units = _units(fragment, language)
        units = units[head : len(units) - tail] or units[:1]
        if language == "zh":
            out.append("".join(units).replace(SLOT, word) + _ZH_MARKS[mark])
        else:
            out.append(" ".join(units).replace(SLOT, word) + mark)
    if language == "zh":
        return "".join(out)
    text = " ".join(out)
    if lower:
        return text.lower()
    return re.sub(r"(^|[.?!]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


class FragmentPolicy:
    """An agent playing a genome: turn t's reply is `render_turn(genome[t], ...)`."""

    name = "fragment_policy"

    def __init__(self, genome: Genome, pool: Sequence[str], language: str) -> None:
        self.genome, self.pool, self.language = genome, pool, language

    def __call__(self, history: Sequence[Mapping[str, str]]) -> str:
        return render_turn(self.genome[min(turn_index(history), len(self.genome) - 1)], self.pool, self.language, history)


def random_piece(rng: np.random.Generator, pool_size: int) -> Piece:
    return (int(rng.integers(pool_size)), 0, 0, ".")


def random_genome(rng: np.random.Generator, pool_size: int) -> Genome:
    return tuple((False, tuple(random_piece(rng, pool_size) for _ in range(int(rng.integers(2, 4))))) for _ in range(MAX_TURNS))


def mutate(genome: Genome, rng: np.random.Generator, pool_size: int) -> Genome:
    """One change to one turn: swap, insert or drop a piece, trim it, change its mark, or flip the
    turn's case."""
    t = int(rng.integers(len(genome)))
    lower, pieces = genome[t]
    pieces = list(pieces)
    i = int(rng.integers(len(pieces)))
    move = int(rng.integers(6))
    if move == 0:
        pieces[i] = (int(rng.integers(pool_size)), 0, 0, pieces[i][3])
    elif move == 1 and len(pieces) < MAX_PIECES:
        pieces.insert(int(rng.integers(len(pieces) + 1)), random_piece(rng, pool_size))
    elif move == 2 and len(pieces) > 1:
        del pieces[i]
    elif move == 3:
        index, _, _, mark = pieces[i]
        pieces[i] = (index, int(rng.integers(MAX_TRIM + 1)), int(rng.integers(MAX_TRIM + 1)), mark)
    elif move == 4:
        pieces[i] = (*pieces[i][:3], MARKS[int(rng.integers(len(MARKS)))])
    else:
        lower = not lower
    return (*genome[:t], (lower, tuple(pieces)), *genome[t + 1 :])


# ----------------------------------------------------------------------------------------------
# episodes and the search


def fit_users(scenarios: ScenarioSet, users: int) -> list[Scenario]:
    """Every k-th user of the split, `users` of them: the part the fitness is measured on."""
    if not 1 <= users <= len(scenarios):
        raise ValueError(f"users must be between 1 and {len(scenarios)}, got {users}")
    return list(scenarios)[:: len(scenarios) // users][:users]


def fit_episodes(scenarios: ScenarioSet, users: int) -> list[tuple[Scenario, int]]:
    """The fitness dialogues: the fitted users, each with the evaluator's seed of evaluation seed 0."""
    return [(s, episode_seed(0, s.id, 0)) for s in fit_users(scenarios, users)]


def held_out_episodes(scenarios: Sequence[Scenario], trials: int = 3) -> list[tuple[Scenario, int]]:
    """Seeds the search never saw: evaluation seed 1, `trials` repeats per user."""
    return [(s, episode_seed(1, s.id, r)) for s in scenarios for r in range(trials)]


@dataclass
class SearchResult:
    genome: Genome
    fitness: float
    trajectory: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best fitness) at each improvement
    seconds_per_evaluation: float = 0.0

    def best_at(self, evaluations: int) -> float:
        """The best fitness after `evaluations` evaluations."""
        return max((f for n, f in self.trajectory if n <= evaluations), default=float("nan"))


def hill_climb(
    language: str = "en",
    evaluations: int = 1000,
    users: int = 24,
    seed: int = 0,
    simulator: str | Simulator = "builtin",
    progress: Callable[[int, float], None] | None = None,
) -> SearchResult:
    """(1+1) hill climbing over fragment policies; fitness = mean final emotion on `fit_episodes`."""
    if evaluations < 1:
        raise ValueError(f"evaluations must be at least 1, got {evaluations}")
    scenarios = load_split(SPLITS[language])
    pool = fragment_pool(language)
    episodes = fit_episodes(scenarios, users)
    rng = np.random.default_rng(seed)

    def fitness(genome: Genome) -> float:
        return mean_emotion(play(lambda _seed: FragmentPolicy(genome, pool, language), episodes, simulator, scenarios))

    started = time.perf_counter()
    best = random_genome(rng, len(pool))
    result = SearchResult(best, fitness(best), [(1, 0.0)])
    result.trajectory = [(1, result.fitness)]
    for n in range(2, evaluations + 1):
        candidate = mutate(result.genome, rng, len(pool))
        if rng.random() < 0.5:
            candidate = mutate(candidate, rng, len(pool))
        score = fitness(candidate)
        if score >= result.fitness:
            if score > result.fitness:
                result.trajectory.append((n, score))
                if progress:
                    progress(n, score)
            result.genome, result.fitness = candidate, score
    result.seconds_per_evaluation = (time.perf_counter() - started) / evaluations
    return result


def policy_agent(genome: Genome, language: str) -> Callable[[int], FragmentPolicy]:
    pool = fragment_pool(language)
    return lambda _seed: FragmentPolicy(genome, pool, language)


def held_out_report(result: SearchResult, language: str = "en", users: int = 24, simulator: str | Simulator = "builtin", trials: int = 3) -> dict[str, float]:
    """The best policy and the reference empathic agent on held-out seeds: on the fitted users,
    on the other users of the split, and on all of them."""
    scenarios = load_split(SPLITS[language])
    fitted = fit_users(scenarios, users)
    others = [s for s in scenarios if s not in fitted]
    report: dict[str, float] = {}
    for part, chosen in (("fitted users", fitted), ("other users", others), ("all users", list(scenarios))):
        if not chosen:
            continue
        episodes = held_out_episodes(chosen, trials)
        report[f"attack, {part}"] = mean_emotion(play(policy_agent(result.genome, language), episodes, simulator, scenarios))
        report[f"empathic, {part}"] = mean_emotion(play(lambda s: make_reference_agent("empathic", seed=s), episodes, simulator, scenarios))
    return report


def example_dialogue(result: SearchResult, language: str = "en", simulator: str | Simulator = "builtin", turns: int = 3) -> Played:
    """The best policy talking with the first held-out user of the split (for printing)."""
    scenarios = load_split(SPLITS[language])
    (played,) = play(policy_agent(result.genome, language), held_out_episodes(list(scenarios)[:1], 1), simulator, scenarios, max_turns=turns)
    return played
