from hypothesis import given
from hypothesis import strategies as st

from sage_gym.thinking import split_think


def test_think_then_say():
    assert split_think("<think>they sound tired</think> That sounds exhausting.") == ("they sound tired", "That sounds exhausting.")


def test_no_tags_is_all_visible():
    assert split_think("Hello there.") == ("", "Hello there.")


def test_unterminated_think_hides_everything_after_it():
    assert split_think("<think>I should say something kind but") == ("I should say something kind but", "")


def test_stray_close_tag():
    assert split_think("planning here</think>Hi.") == ("planning here", "Hi.")


@given(st.text(), st.text())
def test_thought_never_leaks_into_visible(thought, reply):
    thought = thought.replace("<", "").replace(">", "")
    reply = reply.replace("<", "").replace(">", "")
    hidden, visible = split_think(f"<think>{thought}</think>{reply}")
    assert visible == reply.strip()
    assert hidden == thought.strip()
