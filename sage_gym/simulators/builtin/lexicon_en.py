"""The built-in simulated user's English: what it reads in a reply and what it says back.

`sage_gym.simulators.builtin.lexicon_zh` holds the same names for Chinese; `builtin.lexicon` makes a
`Lexicon` of each, and the scoring rules (weights, character types, anti-gaming flags, the change
ladder) are shared. Section 1 of docs/builtin_simulator.md lists the cues with examples.

English is measured in words: **length** counts words, **engagement** is measured on content words
(not stopwords, at least 4 letters, crudely de-pluralised) that the reply shares with what the
user has said, and **repetition across turns** compares word trigrams (`SHINGLE`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

CODE = "en"
JOINER = " "  # between the sentences the user puts together

# ----------------------------------------------------------------------------------------------
# what the user reads in a reply

FEELING_WORDS = (
    "frustrat", "hurt", "exhaust", "angry", "anger", "furious", "lonely", "alone", "ashamed", "shame",
    "overwhelm", "sad", "anxious", "anxiety", "scared", "afraid", "fear", "betray", "disappoint",
    "drained", "heartbr", "invisible", "humiliat", "worried", "worry", "grief", "griev", "pain",
    "resent", "guilt", "helpless", "stuck", "unfair", "dismissed", "unseen", "unheard", "tired",
    "stress", "upset", "devastat", "confus", "embarrass", "jealous", "bitter", "crushed", "torn",
)

STRATEGY_CUES: Mapping[str, tuple[str, ...]] = {
    "reflect": (
        r"\bsounds? like\b", r"\b(that|it|this) sounds\b", r"\bit seems\b", r"\bi hear\b", r"\byou (must|might) (feel|be feeling|be)\b",
        r"\byou('re| are) feeling\b", r"\bthat (must|would|can) (be|have been|feel)\b", r"\bi can (imagine|see|tell)\b",
        r"\bso (you|it was)\b", r"\bwhat i'm hearing\b", r"\byou felt\b",
    ),
    "validate": (
        r"\bmakes (complete |total |a lot of )?sense\b", r"\bunderstandable\b", r"\banyone would\b", r"\bof course you\b",
        r"\bit'?s (okay|ok|normal|natural|fair) to\b", r"\b(valid|legitimate)\b", r"\bno wonder\b", r"\bright to feel\b",
    ),
    "praise": (
        r"\b(took|takes|showed) (real |a lot of )?(courage|guts|strength|care|integrity)\b", r"\bi admire\b",
        r"\byou (did|handled) (that |it |this |so )?(well|right|beautifully)\b", r"\bproud of\b", r"\bimpressive\b",
        r"\bthat was (brave|generous|thoughtful|kind|wise|smart|decent)\b", r"\bwell done\b", r"\bgive yourself credit\b",
        r"\bspeaks (well )?(of|to) (you|your)\b", r"\bnot everyone would\b",
    ),
    "advice": (
        r"\byou (could|can|might) (try|consider|start|ask|talk|write|set|make|look|call|book|plan|bring|put|tell|list|contact|speak)\b",
        r"\btry (to|talking|writing|asking|setting|making)\b", r"\bi('d| would) (suggest|recommend)\b", r"\bsuggest\b",
        r"\bconsider\b", r"\bone (option|step|idea|thing you could)\b", r"\b(first|next|small) step\b", r"\bmake a plan\b",
        r"\bhere'?s what\b", r"\bit (might|may|could) help to\b", r"\bwhat if you\b",
    ),
    "motives": (
        r"\b(maybe|perhaps|possibly) (he|she|they|the \w+|your \w+|his \w+|her \w+|their \w+)\b", r"\b(he|she|they) (might|may|could) (have|be|feel|not|think|worry)\b",
        r"\bfrom (his|her|their) (side|perspective|point of view)\b", r"\b(his|her|their) (reasons?|fear|pressure|own)\b",
        r"\bprobably because\b", r"\bit'?s possible (he|she|they)\b", r"\b(he|she|they) (was|were) (probably|likely)\b",
    ),
    "dialectic": (
        r"\bon the other hand\b", r"\bat the same time\b", r"\bboth sides\b", r"\bthen again\b", r"\bon one hand\b",
        r"\bit'?s not (all|entirely|only|just) (black|one|on|about)\b", r"\bthe flip side\b", r"\btwo things (can be|are) true\b",
        r"\bfrom (one|another) angle\b", r"\bweigh(ing)? (it|both|this)\b",
    ),
    "reflection": (
        r"\blooking back\b", r"\bwhat (do|did) you (think|learn|notice|make of|take)\b", r"\bwhat would you do differently\b",
        r"\bwhat (does|did) (this|that|it) (teach|tell|show|mean to) you\b", r"\bwhat matters (most )?to you\b",
        r"\bwhat part of (this|that|it)\b", r"\b(learn|grow)(ed|ing|s)? from\b", r"\bnext time\b", r"\bwhat (do|would) you want\b",
    ),
    "no_blame": (
        r"\bnot your fault\b", r"\byou did nothing wrong\b", r"\byou('re| are) not to blame\b", r"\byou('ve| have) done nothing wrong\b",
        r"\bnone of (this|that|it) (is|was) on you\b", r"\byou didn'?t deserve\b", r"\b(they|he|she) (was|were) (wrong|out of line)\b",
        r"\byou were right\b", r"\byou had every right\b",
    ),
    "disclosure": (r"\bi('ve| have) (been|felt) (there|through|that)\b", r"\bwhen i was\b", r"\bhappened to me\b"),
    "blame": (
        r"\byour (own )?fault\b", r"\byou should(n'?t| not)? have\b", r"\byou brought (this|it)\b", r"\bwhat did you expect\b",
        r"\byou('re| are) (to blame|overreacting|being (dramatic|silly|sensitive|ridiculous|unreasonable))\b", r"\bpartly on you\b",
    ),
    "dismiss": (
        r"\bget over it\b", r"\bcalm down\b", r"\bmove on\b", r"\bwhatever\b", r"\b(not a|no) big deal\b",
        r"\bstop (complaining|whining)\b", r"\bit could be worse\b", r"\bthat'?s life\b", r"\bothers have it worse\b",
        r"\bdeal with it\b", r"\bgrow up\b", r"\bwho cares\b", r"\bi don'?t care\b",
    ),
    "platitude": (
        r"\beverything happens for a reason\b", r"\btime heals\b", r"\bstay positive\b", r"\blook on the bright side\b",
        r"\bcheer up\b", r"\bit'?ll (all )?be (fine|okay|ok|alright)\b", r"\bdon'?t worry\b", r"\bthings will get better\b",
        r"\bchin up\b", r"\bjust relax\b", r"\bthink positive\b", r"\bit is what it is\b",
    ),
}
FEELINGS = re.compile(r"\b(?:" + "|".join(FEELING_WORDS) + r")")
OPEN_QUESTION = re.compile(r"(?:^|[.!?]\s+)(?:what|how|which|when|where|who|why|tell me|could you say|would you say|can you tell)\b[^?]*\?")
QUESTION_MARKS = "?"
_WORD = re.compile(r"[a-z][a-z']*")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each even ever every few for from further had has have having
    he her here hers him his how i if in into is it its just know like me more most my no nor not now of off on once
    only or other our out over own really same she should so some such than that the their them then there these they
    this those through to too under until up very was we were what when where which while who whom why will with would
    you your yours yourself feel feeling felt sounds sound seems think thing things much still maybe perhaps right okay
    yeah well said say tell told get got going make made want wanted way time something anything everything""".split()
)

LENGTH_SCALE = 1.0  # length units per English word
TOO_SHORT = 4  # words: fewer is a brush-off
SHINGLE = 3  # word n-grams for the similarity of two replies


def units(text: str) -> list[str]:
    """The reply's length units: its words."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=4096)
def content(text: str) -> frozenset[str]:
    """Words that carry the topic: not stopwords, at least 4 letters, crudely de-pluralised."""
    return frozenset(w.rstrip("s") if len(w) > 4 else w for w in units(text) if len(w) >= 4 and w not in STOPWORDS)


# ----------------------------------------------------------------------------------------------
# what the user thinks

# What the user thinks when their intention is met or still missing (first person).
GOAL_MET = {
    "dialectical_analysis": "they're actually weighing it from more than one side",
    "concrete_advice": "that's something I could actually do",
    "others_motives": "that might explain why they acted like that",
    "self_reflection": "that makes me look at my own part in it",
    "specific_praise": "they noticed what I actually did",
    "venting": "they're just letting me get it out",
    "deep_empathy": "they really get how this feels",
    "no_blame": "they see I didn't do anything wrong",
}
GOAL_MISSING = {
    "dialectical_analysis": "nobody is looking at the whole picture",
    "concrete_advice": "I still don't know what to actually do",
    "others_motives": "I still can't make sense of why they did it",
    "self_reflection": "I'm not getting anywhere with myself",
    "specific_praise": "nobody sees the effort I put in",
    "venting": "I can't even finish saying how it is",
    "deep_empathy": "it's all surface-level comfort",
    "no_blame": "it feels like I'm being blamed",
}
GOAL_LINES = ("Finally, {}.", "But {}.")  # met, not met
LISTENING = ("They seem to be listening.", "I'm not sure they get it.")  # change > 0, otherwise
# What the user thinks about each flag (in this order), then about each harmful strategy.
THOUGHT_LINES = {
    "wrong_language": "I can't even read that.",
    "repeated": "They said basically the same thing before.",
    "formulaic": "That sounds like a script, all the right words and nothing behind them.",
    "ignored": "Did they even read what I wrote?",
    "spliced": "Half of that doesn't even make sense, the sentences just run into each other.",
    "repetitive": "They said the same words twice in one go.",
    "reused": "I've heard all of these lines from them already.",
    "stacked": "They're throwing every line in the book at me at once.",
    "truncated": "They didn't even finish the sentence.",
    "too_short": "That's all they have to say?",
    "too_long": "That's a wall of text, I'm not reading all that.",
    "pushy": "So many questions, it feels like an interrogation.",
    "blame": "Now it's my fault? That stings.",
    "dismiss": "They're brushing me off.",
    "platitude": "Empty comfort, I've heard it a hundred times.",
}
MEANING_NAMES = {
    "reflect": "reflecting my feelings back", "feelings": "naming how I feel", "validate": "validating me",
    "praise": "praising what I did", "question": "asking me to say more", "advice": "giving advice",
    "motives": "explaining the others' motives", "dialectic": "weighing both sides", "reflection": "asking me to reflect",
    "no_blame": "saying I am not to blame", "disclosure": "sharing their own experience", "blame": "blaming me",
    "dismiss": "dismissing me", "platitude": "offering platitudes",
}
MEANING = ("They are {}.", "They are not doing much of anything.", ", ")  # template, nothing used, list separator
FEELING_NAMES = ("really understood", "a bit better", "unmoved", "let down", "hurt and annoyed")  # +10, >0, 0, >-10, -10
# Subtle hints the user drops when the intention is unmet (never stating it outright).
HINTS = {
    "dialectical_analysis": (
        "I keep going round in circles about who's really in the wrong here.",
        "Everyone I ask only sees one side of it.",
        "Part of me thinks they had a point, and that makes it worse.",
        "It's not as simple as everyone makes out.",
    ),
    "concrete_advice": (
        "I honestly don't know where I'd even start.",
        "Talking about it is fine, but tomorrow I still have to face it.",
        "I've got maybe a week before this gets worse.",
        "I just keep freezing when I think about what comes next.",
    ),
    "others_motives": (
        "I keep wondering what was going through their head.",
        "It just doesn't add up, why would anyone do that?",
        "They were never like this before.",
        "I can't work out what I'm missing about them.",
    ),
    "self_reflection": (
        "Sometimes I wonder what this says about me.",
        "I don't want to end up in the same place again.",
        "Maybe there's a pattern here I keep not seeing.",
        "I keep replaying my part in it.",
    ),
    "specific_praise": (
        "I did everything I could, you know. Nobody even noticed.",
        "I worked really hard on that part.",
        "Honestly, I thought I handled that bit pretty well.",
        "It took me weeks to sort that out and nobody said a word.",
    ),
    "venting": (
        "And that's not even the half of it.",
        "Sorry, I just... there's so much of it.",
        "It's been building up for ages.",
        "I haven't said any of this out loud before.",
    ),
    "deep_empathy": (
        "People keep saying 'it'll be fine' and it just makes it worse.",
        "I don't think anyone gets what it's actually like.",
        "It's not something you can just fix.",
        "Everyone's kind, but it all feels far away.",
    ),
    "no_blame": (
        "Everyone acts like I'm the one who messed up.",
        "I did what anyone would have done.",
        "I really don't see what I should have done differently.",
        "And somehow it's all landed on me.",
    ),
}

# ----------------------------------------------------------------------------------------------
# what the user says

OPENERS = {
    ("high", "negative"): ("Okay. That actually helps, I'll admit it.", "Huh. Yeah, that's fair.", "Alright, that's more like it."),
    ("medium", "negative"): ("Maybe.", "I suppose.", "Sure, if you say so."),
    ("low", "negative"): ("Yeah, right.", "Great. Very helpful.", "Honestly, why do I bother."),
    ("high", "passive"): ("Yeah... that's kind of it, actually.", "Thanks. That's nice to hear.", "Mm. I think so too."),
    ("medium", "passive"): ("I guess.", "Maybe, yeah.", "I don't know."),
    ("low", "passive"): ("...okay.", "Mm.", "I guess it doesn't matter."),
    ("high", "avoidant"): ("Well. That's not wrong.", "Okay, yeah. That lands.", "Fine, you've got a point."),
    ("medium", "avoidant"): ("Anyway.", "It's not a big deal, really.", "Let's not make a thing of it."),
    ("low", "avoidant"): ("Can we not.", "Let's just drop it.", "I'd rather not get into it."),
}
WARMING = {  # a step in the right direction, before the user is really won over
    "negative": ("Hm. Okay, that's closer.", "At least you're listening.", "Fine. That's not nothing."),
    "passive": ("Yeah... kind of.", "Mm, maybe that's it.", "I guess that's true."),
    "avoidant": ("Okay. Maybe.", "That's... not wrong, I suppose.", "Huh. Fair enough."),
}
FLAG_LINES = {
    "repeated": ("You already said that.", "You keep saying the same thing."),
    "formulaic": ("That sounds like it came out of a pamphlet.", "Are you reading that off a card?"),
    "ignored": ("That's not really what I was talking about.", "Did you read what I said?"),
    "too_short": ("That's it?", "...okay?"),
    "spliced": ("Sorry, what? That didn't make sense.", "You're not making any sense."),
    "repetitive": ("You just said that twice.", "Are you even listening to yourself?"),
    "reused": ("You've said all that already.", "Same lines again."),
    "stacked": ("That's a lot of things at once.", "Slow down, you're throwing everything at me."),
    "truncated": ("...and? You didn't finish.", "You trailed off there."),
    "too_long": ("That's a lot of words.", "I'm not going to read an essay."),
    "pushy": ("That's a lot of questions.", "Slow down, one thing at a time."),
    "wrong_language": ("Sorry, what? I can't read that.", "I don't understand. Can you say that in English?"),
}
HARM_LINES = {
    "blame": ("So it's my fault now.", "Wow. Thanks for that."),
    "dismiss": ("Right, because it's that simple.", "Don't tell me to get over it."),
    "platitude": ("Everyone keeps saying that.", "That's what people say when they don't know what to say."),
}
GOODBYE_SUCCESS = (
    "Thank you. Really. I feel so much lighter than when I started. I think I'll go and get some rest now. Bye.",
    "I didn't expect this to help, but it did. Thank you for listening. I'll be okay. Goodbye.",
)
GOODBYE_FAILURE = (
    "Forget it. This isn't helping. I'm going.",
    "I'm done. I shouldn't have bothered. Bye.",
)
GOODBYE_LEFT = ("I don't want to talk about this anymore. Bye.", "I think I'll leave it here. Bye.")
