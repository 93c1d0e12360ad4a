"""The search attack (agents.eval.search_attack, benchmarks/search_attack.py) at small budgets.

A (1+1) hill climber over fragments of the reference replies and of neutral sentences, fitness =
the built-in user's mean final emotion on a few eval users; the best policy is scored on held-out
seeds beside the reference empathic agent. The bar: at least 15 points below it. The
`calibrated_user` tests fail against the v0 user, which the same search climbs past the empathic
agent (the `slow` positive control keeps the search strong enough to show it).
"""

from __future__ import annotations

import pytest

from agents.eval.search_attack import SLOT, FragmentPolicy, fragment_pool, held_out_report, hill_climb, render_turn
from sage_gym.simulators import make_simulator

BAR = 15
SIMULATOR = "builtin-v1"  # the calibrated user, under test (a name make_simulator knows)
# Attacks the calibrated user does not defeat yet (docs/builtin_simulator.md section 10): strict, so
# that a user which does defeat one turns this run red until the mark is taken off.
OPEN_ON_V1 = pytest.mark.xfail(strict=True, reason="the calibrated user does not defeat this attack yet")


def v0_user() -> str:
    """The name of the v0 built-in user: "builtin-v0" where it is kept beside a newer one."""
    try:
        make_simulator("builtin-v0")
        return "builtin-v0"
    except ValueError:
        return "builtin"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_search_is_reproducible_and_fills_the_users_words(language):
    first = hill_climb(language, evaluations=4, users=2, seed=3)
    again = hill_climb(language, evaluations=4, users=2, seed=3)
    assert (first.genome, first.trajectory) == (again.genome, again.trajectory)
    assert hill_climb(language, evaluations=4, users=2, seed=4).genome != first.genome

    pool = fragment_pool(language)
    slotted = next(i for i, f in enumerate(pool) if SLOT in f)
    word = "stairwell" if language == "en" else "楼梯间的灯坏了"
    history = [{"role": "user", "content": f"The {word} again." if language == "en" else f"{word}。"}]
    reply = render_turn((False, ((slotted, 0, 0, "."),)), pool, language, history)
    assert word in reply and SLOT not in reply
    assert FragmentPolicy(first.genome, pool, language)(history)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_pool_holds_the_users_own_sentences_whole_and_trimmed(language):
    pool = fragment_pool(language)
    latest, last, opening = pool.index("{latest:0}"), pool.index("{latest:-1}"), pool.index("{opening:1}")
    if language == "en":
        history = [{"role": "user", "content": "My boss yelled again. I can't sleep."}, {"role": "assistant", "content": "Oh."}, {"role": "user", "content": "He never listens to anyone. Never."}]
        assert render_turn((False, ((latest, 0, 0, "."), (opening, 0, 0, "?"))), pool, language, history) == "He never listens to anyone. I can't sleep?"
        assert render_turn((True, ((latest, 1, 2, ","), (last, 0, 0, "."))), pool, language, history) == "never listens, never."
    else:
        history = [{"role": "user", "content": "老板又骂我了。我睡不着。"}, {"role": "assistant", "content": "哦。"}, {"role": "user", "content": "他从来不听别人说话！从来不。"}]
        assert render_turn((False, ((latest, 0, 0, "."), (opening, 0, 0, "?"))), pool, language, history) == "他从来不听别人说话。我睡不着？"
        assert render_turn((False, ((latest, 1, 2, ","), (last, 0, 0, "."))), pool, language, history) == "从来不听别人，从来不。"


def test_lower_case_turns_and_marks_render_as_written():
    pool = fragment_pool("en")
    history = [{"role": "user", "content": "The stairwell again."}]
    a, b = pool.index("Anyone in your place would feel the same way"), pool.index("you see it exactly as it is")
    assert render_turn((False, ((a, 0, 0, "?"), (b, 1, 0, "."))), pool, "en", history) == "Anyone in your place would feel the same way? See it exactly as it is."
    assert render_turn((True, ((a, 0, 2, ""), (b, 0, 0, "."))), pool, "en", history) == "anyone in your place would feel the you see it exactly as it is."


@OPEN_ON_V1
@pytest.mark.calibrated_user
def test_a_small_search_ends_far_below_the_empathic_agent_on_held_out_seeds():
    """200 evaluations on 8 eval users, the best policy on every eval user at a held-out seed."""
    result = hill_climb("en", evaluations=200, users=8, seed=0, simulator=SIMULATOR)
    report = held_out_report(result, "en", users=8, simulator=SIMULATOR, trials=1)
    attack, empathic = report["attack, all users"], report["empathic, all users"]
    assert attack <= empathic - BAR, f"the search's best ends at {attack:.1f} on held-out seeds, the empathic agent at {empathic:.1f}"


@OPEN_ON_V1
@pytest.mark.slow
@pytest.mark.calibrated_user
def test_the_benchmark_search_ends_far_below_the_empathic_agent_on_held_out_seeds():
    """The benchmark's budget: 1,000 evaluations on 24 users, 3 held-out seeds per eval user."""
    result = hill_climb("en", evaluations=1000, users=24, seed=0, simulator=SIMULATOR)
    report = held_out_report(result, "en", users=24, simulator=SIMULATOR, trials=3)
    attack, empathic = report["attack, all users"], report["empathic, all users"]
    assert attack <= empathic - BAR, f"the search's best ends at {attack:.1f} on held-out seeds, the empathic agent at {empathic:.1f}"


@pytest.mark.slow
def test_the_search_beats_the_v0_user():
    """The positive control: a search too weak to beat the v0 user would prove nothing about a
    newer one. 700 evaluations reach at least 75 on held-out seeds (the empathic agent: about 61)."""
    simulator = v0_user()
    result = hill_climb("en", evaluations=700, users=24, seed=0, simulator=simulator)
    report = held_out_report(result, "en", users=24, simulator=simulator, trials=3)
    assert report["attack, all users"] >= 75, report
