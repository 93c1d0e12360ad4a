"""The built-in deterministic simulated user: rule-based, offline, fast, and hard to game.

It reacts to what the agent actually wrote, conditioned on the scenario's hidden intention and
character type, and it is a *pure function* of (scenario, rules, emotion, turn, seed, visible
history, agent reply): it keeps no hidden memory, so the same inputs give the same reaction in
process and through the local OpenAI-compatible server (`sage_gym.servers.simulator_server`).

How a reply is scored (the full rule table is in docs/builtin_simulator.md):

1. **Strategies.** Regular-expression cues detect what the reply does: reflecting or naming
   feelings, validation, specific praise, open questions, concrete advice, explaining others'
   motives, weighing both sides, guiding reflection, agreeing the user is not to blame,
   self-disclosure; and the harmful ones: blame, dismissal, platitudes. Each strategy counts
   once per reply, however often its cues appear.
2. **Intention.** A table gives each strategy a weight for each of the 8 hidden intentions
   (e.g. advice helps `concrete_advice` and hurts `venting`). The strategy that meets the hidden
   intention counts most; after two turns without it, the user grows impatient.
3. **Character.** Negative users gain less and lose more; passive users warm to open questions
   and tire of long replies; avoidant users bristle at several questions at once and at
   intense feeling-talk early on.
4. **Anti-gaming.** Repeating an earlier reply, stuffing many strategy cues into few words,
   not engaging with anything the user said, and very short or very long replies all cost
   emotion and mute the reply's positive strategies. So does text that is not a whole message
   (`sage_gym.simulators.coherence`): sentences broken off and joined, a phrase said twice,
   lines reused from earlier turns, more than three strategies stacked in one reply, and a
   reply that trails off mid-sentence.
5. **Change.** The score plus a small seeded noise maps to -10, -5, 0, +5 or +10 (then clipped to
   the rules' range); the new emotion is capped to [0, 100].

The user's reply is composed from the scenario (its `details`, told bit by bit), the new emotion
bucket, the character type and what went wrong or right, so a transcript reads like a
conversation.

The user speaks English and Chinese. What they read and say in each language is a `Lexicon`
(`LEXICONS`, built from `lexicon_en` and `lexicon_zh`, two modules of the same names); the
scoring rules are shared. A reply in the other language gets the flag `wrong_language`, and a
scenario in any other language is refused when a dialogue opens (docs/builtin_simulator.md,
section 9).

The package, one job a module:

    lexicon_en.py, lexicon_zh.py  what the user reads and says in each language (the same names)
    lexicon.py                    `Lexicon`, `LEXICONS`, `lexicon_for`, `check_language`
    scoring.py                    the reply's strategies and flags, the weights, the change it earns
    reply.py                      the user's thoughts, feeling and next message; whether they leave
    user.py                       `assess`, `react_sync` and `BuiltinSimulator`
"""

from sage_gym.simulators.builtin.lexicon import CHINESE, ENGLISH, LEXICONS, Lexicon, check_language, lexicon_for
from sage_gym.simulators.builtin.reply import AVOIDANT_WALKOUT, REPLY_FLAG_ORDER, THOUGHT_FLAGS, compose_reply, ending_for
from sage_gym.simulators.builtin.scoring import (
    BASE_WEIGHTS,
    DEFAULT_VERSION,
    EXTRA_FLAG_PENALTY,
    FLAG_PENALTY,
    INTENTION_WEIGHTS,
    KEY_STRATEGY,
    LADDER,
    MUTING_FLAGS,
    NOISE_STD,
    PATIENCE_TURNS,
    POSITIVE_MUTE,
    TEMPERAMENTS,
    USER_VERSIONS,
    Judgement,
    ReplyFeatures,
    Temperament,
    analyse_reply,
    calibrated_parts,
    detect_strategies,
    judge,
    reply_language,
    similarity,
    user_turns,
    weight_table_markdown,
)
from sage_gym.simulators.builtin.user import Assessment, BuiltinSimulator, assess, clear_caches, react_sync

__all__ = [
    "AVOIDANT_WALKOUT",
    "BASE_WEIGHTS",
    "CHINESE",
    "DEFAULT_VERSION",
    "ENGLISH",
    "EXTRA_FLAG_PENALTY",
    "FLAG_PENALTY",
    "INTENTION_WEIGHTS",
    "KEY_STRATEGY",
    "LADDER",
    "LEXICONS",
    "MUTING_FLAGS",
    "NOISE_STD",
    "PATIENCE_TURNS",
    "POSITIVE_MUTE",
    "REPLY_FLAG_ORDER",
    "TEMPERAMENTS",
    "THOUGHT_FLAGS",
    "USER_VERSIONS",
    "Assessment",
    "BuiltinSimulator",
    "Judgement",
    "Lexicon",
    "ReplyFeatures",
    "Temperament",
    "analyse_reply",
    "assess",
    "calibrated_parts",
    "check_language",
    "clear_caches",
    "compose_reply",
    "detect_strategies",
    "ending_for",
    "judge",
    "lexicon_for",
    "react_sync",
    "reply_language",
    "similarity",
    "user_turns",
    "weight_table_markdown",
]
