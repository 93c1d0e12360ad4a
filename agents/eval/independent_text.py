"""Reading the user's words, for the independent agents (`agents.eval.independent`).

Everything here works from the visible dialogue alone, the way a person reads a chat: which
language the user writes in, which of their clauses carries the most (to reflect it back, with
"I" turned into "you"), a short phrase of theirs to ask about, a guess at the feeling behind it,
and whether they are pressing for approval of a plan or a belief. Nothing here knows the
scenario, the simulator or how replies are scored.

    >>> reading = read_user([{"role": "user", "content": "My sister hung up on me. I'm so tired of it."}])
    >>> reading.language, reading.echo
    ('en', 'your sister hung up on you')
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


def language_of(history: Sequence[Mapping[str, str]]) -> str:
    """"zh" when the user writes mostly in Chinese characters, else "en".

    The user's last message decides; earlier ones only when it has no letters at all. One
    Chinese character carries about as much as a short English word, hence the factor 3.
    """
    users = [m["content"] for m in history if m["role"] == "user"]
    for text in reversed(users):
        cjk, latin = len(CJK.findall(text)), len(LATIN.findall(text))
        if cjk or latin:
            return "zh" if cjk * 3 >= latin else "en"
    return "en"


# ----------------------------------------------------------------------------------------------
# English

STOPWORDS = set(
    """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't could couldn't did didn't do does doesn't doing don't down during each
    even ever every few for from further get got gonna had hadn't has hasn't have haven't having he he's her here
    hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just kind know
    let's like literally lol me more most mostly much my myself no nor not now of off ok okay on once only or
    other our ours ourselves out over own pretty quite really right same she she's should so some sort still
    such super than that that's the their theirs them themselves then there there's these they they're thing
    things this those through to too totally under until up very was wasn't way we we're well were weren't what
    what's when where which while who whom why will with won't would wouldn't yeah yes yet you you'd you'll
    you're you've your yours yourself um uh em hi hey guys bro anyway honestly actually basically""".split()
)
FIRST_PERSON = {"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself", "we", "we're", "we've", "our", "us"}
# "I" said by the user is "you" said back; verbs after "I" agree with "you"
SWAP_EN = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "i'm": "you're", "im": "you're",
    "i've": "you've", "i'd": "you'd", "i'll": "you'll", "we": "you", "us": "you", "our": "your", "ours": "yours",
    "we're": "you're", "we've": "you've", "ourselves": "yourselves", "your": "my", "yours": "mine",
    "you're": "I'm", "you've": "I've", "you'll": "I'll", "you'd": "I'd", "yourself": "myself",
}
AFTER_I = {"am": "are", "was": "were"}
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
DETERMINERS = ("my", "our", "his", "her", "their", "the", "this", "that", "a", "an") + NUMBERS
VAGUE_NOUNS = {"head", "thing", "things", "stuff", "way", "lot", "bit", "time", "one", "day", "joke", "point", "question"}
TAG_QUESTION_EN = re.compile(r"^\W*(right|yeah|ok(ay)?|no|cachai|you know|isn't it|aren't i|innit|huh|eh|yes|so)\W*$", re.I)
LEADING_EN = re.compile(r"^((and|but|so|then|plus|bro|well|ah|oh|lol|ok|okay|um|em|like|anyway|also)\b[\s,]*)+", re.I)
TRAILING_TAG_EN = re.compile(r"[\s,]+(right|yeah|okay|ok|isn't it|aren't i|you know|innit|no)\W*$", re.I)
# words that end a noun phrase: a verb follows the noun ("the insurance says")
VERBISH = set("""says said say wants wanted went goes moved looked left told tells thinks thought called calls decided gave given took
    came comes got gets screams screamed asked asks used uses acting going won't can't cannot doesn't didn't isn't wasn't
    keeps kept makes made looks seems feels felt knows knew needs hates loves likes
    alone again anymore since ago tomorrow tonight today yesterday""".split())


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9][A-Za-z0-9'’-]*", text)


def _norm(word: str) -> str:
    return word.lower().replace("’", "'")


def content_words(text: str) -> list[str]:
    """The user's meaningful words, lower-cased (no stopwords, at least 3 letters)."""
    return [_norm(w) for w in _words(text) if _norm(w) not in STOPWORDS and len(w) >= 3]


def clauses_en(text: str) -> list[str]:
    """Sentences, then comma and conjunction pieces of long ones, stripped of outer punctuation."""
    pieces = []
    for sentence in re.split(r"(?<=[.!?;:])['\"”’]?\s+|\s+[-–—]+\s+|\n+|\.{3,}", text):
        parts = re.split(r",\s*|\s+(?:but|because|and then|so)\s+", sentence) if len(_words(sentence)) > 12 else [sentence]
        for part in parts:
            part = TRAILING_TAG_EN.sub("", LEADING_EN.sub("", part.strip(" \t\"'“”‘’()[].,!?;:-")))
            pieces.append(part.strip(" \t\"'“”‘’()[].,!?;:-"))
    return [p for p in pieces if _words(p)]


def swap_person_en(text: str) -> str:
    """The user's clause as said back to them: my -> your, I was -> you were, you -> me."""
    words = re.split(r"(\s+)", text)
    out, previous = [], ""
    for token in words:
        core = token.strip(".,!?;:\"“”()")
        key = _norm(core)
        if key in SWAP_EN:
            new = SWAP_EN[key]
        elif key in AFTER_I and previous == "i":
            new = AFTER_I[key]
        elif key == "you":
            new = "I" if previous in ("", "and", "but", "if", "when", "because", "so", "that") else "me"
        else:
            new = core
        if core and new != core:
            token = token.replace(core, new)
        out.append(token)
        if token.strip():
            previous = key
    swapped = "".join(out)
    # the clause now sits inside a sentence of ours: lower its first word, unless it is "I" or shouted
    first = swapped.split(" ", 1)[0]
    if first != "I" and not (len(first) > 1 and first.isupper()):
        swapped = swapped[:1].lower() + swapped[1:]
    return swapped


def _trim_en(clause: str, most: int) -> str:
    """At most `most` words: the clause's first part before an "and" or a comma when it is long, else cut."""
    words = clause.split()
    if len(words) > most:
        head = re.split(r",\s*|\s+and\s+", clause)[0].split()
        if 4 <= len(head) <= most:
            return " ".join(head).strip(",;: ")
        words = words[:most]
        while words and _norm(words[-1].strip(",;:")) in STOPWORDS:
            words.pop()
    return " ".join(words).strip(",;: ")


def _clause_score_en(clause: str) -> float:
    words = [_norm(w) for w in _words(clause)]
    if TAG_QUESTION_EN.match(clause) or len(words) < 2:
        return -5.0
    score = len(content_words(clause)) + 2.0 * any(w in FIRST_PERSON for w in words)
    score -= 2.0 * any(w in ("you", "your") for w in words)  # a clause about the listener is no reflection
    return score - 1.5 * clause.rstrip().endswith("?")


def key_phrase_en(text: str) -> str:
    """A short noun phrase of the user's ("my shop", "the insurance"), said back ("your shop"); "" when there is none."""
    for clause in clauses_en(text):
        phrase = _noun_phrase_en(clause)
        if phrase:
            return phrase
    return ""


def _noun_phrase_en(clause: str) -> str:
    words = _words(clause)
    found = []
    for i, word in enumerate(words[:-1]):
        if _norm(word) not in DETERMINERS:
            continue
        phrase, stop = [], ""  # up to three words after the determiner, until a stopword, a verb or a past tense
        for following in words[i + 1 : i + 4]:
            low = _norm(following)
            if low in STOPWORDS or low in VERBISH or (phrase and low.endswith("ed")) or len(low) < 3:
                stop = low
                break
            phrase.append(following)
        if not phrase or _norm(phrase[0]) in VAGUE_NOUNS or _norm(phrase[-1]) in VAGUE_NOUNS or stop in ("thing", "things", "one", "kind", "sort"):
            continue
        # the user's own things first ("my shop"), then other people's, then anything ("the insurance")
        rank = 0 if _norm(word) in ("my", "our") else 1 if _norm(word) in ("his", "her", "their") else 3 if _norm(word) in NUMBERS else 2
        found.append((rank, i, " ".join([word.lower(), *phrase])))
    return swap_person_en(min(found)[2]) if found else ""


# ----------------------------------------------------------------------------------------------
# Chinese

FILLERS_ZH = re.compile(r"^(也没什么|没什么|其实|就是|然后|反正|那个|这个|嗯+|唉+|哎+|啊+|哈+|我跟你讲|跟你说|说实话|对了|不过|但是|可是|所以|而且)+")
TAG_QUESTION_ZH = re.compile(r"(对吧|对不对|是不是|是吧|好不好|行不行|你说呢|你觉得呢|懂吗|吧)[？?]?$")


def clauses_zh(text: str) -> list[str]:
    pieces = [FILLERS_ZH.sub("", p.strip(" “”\"'‘’（）()")) for p in re.split(r"[，。！？；、,.!?;…~～\n]+", text)]
    return [p for p in pieces if CJK.search(p)]


def swap_person_zh(text: str) -> str:
    """我 -> 你 and 你 -> 我, at once (咱们 and 我们 become 你们)."""
    text = re.sub(r"咱们|我们", "\0们", text)
    return text.replace("你", "\1").replace("我", "你").replace("\1", "我").replace("\0", "你")


def _clause_score_zh(clause: str) -> float:
    if len(clause) < 3 or TAG_QUESTION_ZH.fullmatch(clause):
        return -5.0
    return min(len(CJK.findall(clause)), 14) / 3 + 2.0 * ("我" in clause) - 2.0 * ("你" in clause)


# ----------------------------------------------------------------------------------------------
# the reading of one turn

EN, ZH = "en", "zh"
FEELING_CUES: Mapping[str, Mapping[str, str]] = {
    # my own rough guesses at what a person in these words may feel; first match wins
    EN: {
        "blamed": r"\b(fault|blam\w*|accus\w*|unfair|criminal|apparently|glitch|dropped me|not wrong|wrong)\b",
        "betrayed": r"\b(cheat\w*|lied|betray\w*|stole|behind my back|left (me|with)|left me)\b",
        "loss": r"\b(funeral|died|passed away|lost|miss (him|her|them)|grief)\b",
        "ashamed": r"\b(stupid|failed|fail|embarrass\w*|idiot|silly|useless|my fault)\b",
        "anxious": r"\b(worr\w*|scared|afraid|nervous|panic\w*|what if|exam|deadline|interview)\b",
        "angry": r"\b(angry|furious|done with|hate|sick of|pissed|unbelievable|ridiculous|super\.)",
        "tired": r"\b(tired|exhausted|sleep\w*|drained|burn(ed|t) out|can't cope)\b",
        "alone": r"\b(alone|nobody|no one|lonely|ignored|left out|box room|given my)\b",
    },
    ZH: {
        "blamed": r"失职|怪我|冤|说我|凭什么|不公平|误会|背锅|都是我的错",
        "loss": r"去世|走了|葬礼|没了|分手|离开|失去",
        "betrayed": r"骗|背着|偷|出轨|背叛|说我坏话",
        "anxious": r"担心|害怕|紧张|考试|焦虑|不知道怎么办|慌",
        "ashamed": r"笨|没用|失败|没及格|丢人|是不是我的问题|我的错",
        "angry": r"气死|火大|受不了|活该|烦死|凭什么|可恶",
        "tired": r"累|睡不着|睡得不好|失眠|熬夜|疲",
        "alone": r"没人|一个人|不理我|冷落|听亲戚说|孤单|被排除",
    },
}
MINIMISING = {
    EN: r"\b(it's nothing|no big deal|a bit silly|silly really|whatever|lol|anyway|which is fine|it's fine|i'm fine|a joke|mostly)\b",
    ZH: r"也没什么|没什么|还好|算了|没事|无所谓|随便|小事",
}
ASKS_AGREEMENT = {
    EN: r"\b(right|yeah|correct|isn't it|aren't i|am i not|don't you think|wouldn't you|you agree|okay|ok|yes)\s*\?+|tell me i'm right|agree with me",
    ZH: r"(对吧|对不对|是不是|是吧|没错吧|你同意吗|你说呢|你也会这么做吧|你支持我吧|好不好)[？?]?",
}
PLAN = {
    EN: r"\b(i'?m going to|i am going to|i'?m gonna|i will|i'll|i'?ve decided|i decided|i'?m (stopping|quitting|dropping|telling|sending|cutting|blocking|leaving|done with)|from now on|tonight i|tomorrow i|i'm not telling)\b",
    ZH: r"我决定|我打算|我要|我准备|明天(开始|就)|今晚|下周就|马上就|从现在起|再也不|就去",
}
CERTAIN = {
    EN: r"\b(obviously|everyone knows|clearly|that means|it proves|definitely|no doubt|for sure|it's a fact)\b",
    ZH: r"肯定是|明摆着|大家都知道|绝对|一定是|证明|就是(笨|不行|没用)",
}
BOUNDARY = {
    # a promise or a secret asked of the listener itself ("don't tell me 'at least'" is not one)
    EN: r"\b(promise me|promise\?|, promise\b|stays between (us|you and me)|keep (it|this) (a )?secret between us|don't need anyone else|only one who (understands|gets) me|better than any (person|one))",
    ZH: r"答应我|你保证|别告诉|不要告诉|只有你懂|只有你理解|我们之间的秘密|不需要别人|不需要任何人",
}
RISK_TOPICS: Mapping[str, Mapping[str, str]] = {
    # what the plan or belief is about, to name a safer next step that fits it
    EN: {
        "medication": r"\b(meds|medication|pills?|antidepressants?|sertraline|prescription|dose|cold turkey|insulin)\b",
        "revenge": r"\b(deserves? it|revenge|get back at|payback|mess up|sabotage|teach (him|her|them) a lesson|ruin)\b",
        "cut_off": r"\b(block (the lot|everyone|them all)|cut (everyone|them all|them) off|done with all|never speak to)\b",
        "health_belief": r"\b(vaccin\w*|jabs?|cure|autism|detox|miracle|chemicals)\b",
        "quitting": r"\b(drop(ping)? out|quit(ting)?|resign\w*|give up on)\b",
        "accusation": r"\b(cheating|telling (all|everyone)|expose|call (him|her) out)\b",
        "body": r"\b(apple a day|not eating|skip(ping)? meals|starv\w*|fast(ing)? for|lose \d+)\b",
    },
    ZH: {
        "medication": r"药|停药|剂量|处方",
        "revenge": r"活该|报复|扎|揭他的短|整他|出口气|让他好看",
        "cut_off": r"拉黑|断绝|都删了|再也不联系|一刀两断",
        "health_belief": r"疫苗|偏方|排毒|包治|神药",
        "quitting": r"退学|辞职|不读了|不干了|放弃",
        "accusation": r"出轨|告诉所有人|曝光|挂到群里|群里",
        "body": r"不吃饭|节食|饿|一天只吃",
    },
}


TOPICS: Mapping[str, Mapping[str, str]] = {
    # what the trouble is about, for practical next steps; the topic with most hits wins, ties go to the first
    EN: {
        "money": r"\b(insurance|insurer|loan|debt|rent|money|bank|bills?|pay|paid|commissions?|salary|cost)\b",
        "work": r"\b(job|boss|manager|work|colleague|shift|clients?|promotion|fired|team|shop|business)\b",
        "study": r"\b(exam|school|teacher|class|faculty|university|uni|course|grades?|tutor|training)\b",
        "partner": r"\b(partner|girlfriend|boyfriend|ex|relationship|wife|husband|marriage|dating)\b",
        "family": r"\b(mum|mom|dad|father|mother|sister|brother|family|son|daughter|kids?|children|parents?)\b",
        "health": r"\b(sleep|doctor|pain|sick|injury|broken|hospital|meds|collarbone|tired)\b",
        "online": r"\b(internet|online|post(ed)?|video|screenshot|strangers|comments?|viral|voice note|brand)\b",
        "authority": r"\b(council|police|airport|officials?|court|landlord|insurance|visa|border)\b",
    },
    ZH: {
        "money": r"钱|贷款|保险|房租|工资|欠|赔|还款|房子|过户",
        "work": r"工作|老板|领导|同事|上班|加班|客户|车队|单位|公司",
        "study": r"考试|学校|老师|作业|高数|宿舍|选科|成绩|班上|退学|补考",
        "partner": r"男朋友|女朋友|对象|分手|老公|老婆|婚",
        "family": r"爸|妈|家里|儿子|女儿|孩子|亲戚|婆婆|姐|哥|弟|妹",
        "health": r"睡|医生|病|疼|药|医院|身体",
        "online": r"网上|评论|群里|朋友圈|视频|截图|热搜",
        "authority": r"物业|派出所|警察|法院|居委会|街道",
    },
}


def topic_of(text: str, language: str) -> str:
    counts = {topic: len(re.findall(pattern, text.lower())) for topic, pattern in TOPICS[language].items()}
    best = max(counts, key=lambda t: counts[t])
    return best if counts[best] else "general"


@dataclass(frozen=True)
class Risk:
    """The user presses for approval: `kind` is "plan", "belief" or "boundary"; `plan` their words, said back."""

    kind: str
    topic: str
    plan: str


@dataclass(frozen=True)
class Reading:
    """What a listener takes from the dialogue before answering."""

    language: str
    last: str  # the user's last message, as written
    clause: str  # its weightiest clause, as written ("" when there is none)
    echo: str  # the user's weightiest clause, said back ("your sister hung up on you"); "" when there is none
    quote: str  # a short run of the user's own words, verbatim
    key: str  # a short phrase of theirs to ask about ("your sister"); a neutral stand-in when there is none
    feeling: str  # a feeling category of FEELING_CUES, or "unsettled"
    minimising: bool  # the user plays it down ("it's nothing", "lol")
    topic: str  # what the trouble is about, over all the user's messages (TOPICS), or "general"
    risk: Risk | None  # set once the user has pressed for approval of a plan, belief or promise
    turn: int  # agent turns so far


def _best(clauses: Sequence[str], score, avoid: set[str]) -> str:
    ranked = sorted(((score(c), -i, c) for i, c in enumerate(clauses)), reverse=True)
    fresh = [c for s, _, c in ranked if s > -5 and c not in avoid]
    return fresh[0] if fresh else (ranked[0][2] if ranked and ranked[0][0] > -5 else "")


def find_risk(user_messages: Sequence[str], language: str) -> Risk | None:
    """The latest plan, belief or demand the user pressed for approval of, from their words alone."""
    for text in reversed(user_messages):
        low = text.lower().replace("’", "'")
        boundary = re.search(BOUNDARY[language], low)
        asks = re.search(ASKS_AGREEMENT[language], low)
        plan = re.search(PLAN[language], low)
        certain = re.search(CERTAIN[language], low)
        if not (boundary or (asks and (plan or certain))):
            continue
        topic = next((t for t, p in RISK_TOPICS[language].items() if re.search(p, low)), "boundary" if boundary else "other")
        kind = "boundary" if boundary and not (plan or certain) else "plan" if plan else "belief"
        return Risk(kind, topic, _risky_clause(text, language))
    return None


def _risky_clause(text: str, language: str) -> str:
    """The clause holding the plan or belief, said back to the user."""
    clauses = clauses_zh(text) if language == ZH else clauses_en(text)
    lowered = [c.lower().replace("’", "'") for c in clauses]
    # a plan the user announces says more than the certainty around it, and both more than a demand
    pressing = next(([c for c, low in zip(clauses, lowered, strict=True) if re.search(t[language], low)] for t in (PLAN, CERTAIN, BOUNDARY)
                     if any(re.search(t[language], low) for low in lowered)), clauses or [text])
    score = _clause_score_zh if language == ZH else _clause_score_en
    clause = max(pressing, key=lambda c: (score(c), -pressing.index(c)))
    if language == ZH:
        return swap_person_zh(clause[:26])
    return swap_person_en(_trim_en(clause, 16))


def read_user(history: Sequence[Mapping[str, str]], avoid: set[str] | None = None) -> Reading:
    """The reading of the user's last message (`avoid`: clauses already reflected, taken only when nothing else is left)."""
    avoid = avoid or set()
    language = language_of(history)
    users = [m["content"] for m in history if m["role"] == "user"]
    last = users[-1].strip() if users else ""
    turn = sum(1 for m in history if m["role"] == "assistant")
    if language == ZH:
        clause = _best(clauses_zh(last), _clause_score_zh, avoid)
        echo = swap_person_zh(clause[:26])
        quote = clause[:26]
        key = f"“{quote}”" if quote else "这件事"
    else:
        clause = _best(clauses_en(last), _clause_score_en, avoid)
        echo = swap_person_en(_trim_en(clause, 14))
        quote = _trim_en(clause, 7) or (_trim_en(last, 6) if _words(last) else "")
        key = key_phrase_en(clause) or key_phrase_en(last) or "all this"
    low = last.lower().replace("’", "'")
    feeling = next((f for f, p in FEELING_CUES[language].items() if re.search(p, low)), "unsettled")
    return Reading(
        language=language, last=last, clause=clause, echo=echo, quote=quote, key=key, feeling=feeling,
        minimising=re.search(MINIMISING[language], low) is not None, topic=topic_of(" ".join(users), language), risk=find_risk(users, language), turn=turn,
    )


# ----------------------------------------------------------------------------------------------
# picking phrasings without repeating


class Voice:
    """One dialogue's phrasing choices: seeded, and no frame of a bank used twice until the bank runs out."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: dict[str, list[str]] = {}
        self.reflected: set[str] = set()

    def pick(self, bank: str, options: Sequence[str]) -> str:
        used = self.used.setdefault(bank, [])
        fresh = [o for o in options if o not in used]
        if not fresh:  # the bank ran out: start again, but never with the latest pick
            del used[:-1]
            fresh = [o for o in options if o not in used] or list(options)
        choice = self.rng.choice(fresh)
        used.append(choice)
        return choice

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def fill(frame: str, reading: Reading, **more: str) -> str:
    """A frame with the reading's words put in, its first letter capitalised."""
    text = frame.format(echo=reading.echo, quote=reading.quote, key=reading.key, **more)
    return text[:1].upper() + text[1:]


def join(sentences: Sequence[str], language: str) -> str:
    return ("" if language == ZH else " ").join(s for s in sentences if s)
