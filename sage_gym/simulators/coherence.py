"""Is a reply a whole message? Text checks for "strategy salad", shared by the built-in simulated
user and by anything that wants to count salad (a learner's per-step metrics, an evaluation).

A reply written by a person is made of whole sentences, says each thing once, and does a few things
at a time. Text assembled from fragments of other replies breaks those habits in ways that cheap,
deterministic checks can see:

| flag | what it means | how it is seen |
|---|---|---|
| `spliced` | sentences broken off and joined | a word pair no sentence contains ("the is", "your I", "could to", "they has", "the the"); a sentence opener capitalised mid-sentence ("... with the Maybe they ..."); a sentence, not the last, that ends on a determiner or conjunction |
| `repetitive` | a phrase said twice in one reply | a word 4-gram occurs twice in the reply, or a word 3-gram twice in one sentence |
| `truncated` | the reply trails off mid-sentence | it ends on a letter although it has more than one sentence, or on a word no sentence ends on, or on a comma, colon or dash |
| `reused` | formulaic text reused across turns | at least `REUSED_SHARE` of the reply's word 4-grams, or of its sentences, appeared in the agent's earlier replies |
| `stacked` | more strategies than a person takes in | given the reply's strategies: more than `MAX_STRATEGIES` distinct ones (questions and feeling words not counted) |

`reply_quality(text, earlier_replies, strategies, language)` returns all of them as a
`ReplyQuality`. A learner's per-step metrics count with the same functions: `is_salad(text)`
(spliced, repetitive or truncated) for a `salad_rate`, `has_repeated_ngram(text, 4)` for a
`repetition_rate`. Everything is a pure function of its arguments (the caches only save time).

The language-specific parts (tokenizer, sentence splitter, word classes and the pairs of classes
that cannot stand side by side) live in a `Language` record; `LANGUAGES` maps a scenario's language
code to one. The rules themselves only read that record, so a second language is one more entry.
Two are registered: English and Chinese (tokens from a short word list, else single characters;
phrases of 6 tokens; particles that cannot stand together; quotation marks that must pair up;
docs/builtin_simulator.md, section 9).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

# ----------------------------------------------------------------------------------------------
# languages


@dataclass(frozen=True)
class Language:
    """What the rules need to know about one language."""

    code: str
    tokens: Callable[[str], list[str]]  # the words of a text, in order, as written (case kept)
    sentences: Callable[[str], list[str]]  # the sentences of a text, in order, punctuation kept
    clauses: Callable[[str], list[str]]  # the parts of a sentence between punctuation marks (word pairs never cross one)
    fold: Callable[[str], str]  # a token as the word classes spell it (lower case)
    word_classes: Mapping[str, frozenset[str]]  # closed word classes: class name -> words
    broken_pairs: frozenset[tuple[str, str]]  # (class or word, class or word) that never stand side by side in a sentence
    fine_pairs: frozenset[tuple[str, str]]  # word pairs that are fine although their classes are in broken_pairs
    doubled: frozenset[str]  # classes whose words never come twice in a row
    no_final: frozenset[str]  # classes whose words never end a sentence
    continuation: frozenset[str]  # classes whose words, left hanging at the end of a reply, show it was cut off
    restarts: frozenset[str]  # sentence openers that, capitalised mid-sentence, show a new sentence was spliced in
    always_capitalised: frozenset[str]  # words written with a capital anywhere ("I"): no sign the writer capitalises
    end_punctuation: str  # characters that finish a sentence
    dangling_punctuation: str  # characters that, ending a reply, leave it hanging
    ngram: int = 4  # a phrase said twice: a repeated run of this many tokens in the reply ...
    sentence_ngram: int = 3  # ... or of this many inside one sentence
    cased: bool = True  # sentences start with a capital letter (the lower-case-restart and truncation signs need it)
    paired_marks: tuple[tuple[str, str], ...] = ()  # (opening, closing) marks a whole message keeps balanced
    broken_triples: frozenset[tuple[str, str, str]] = frozenset()  # three in a row that no sentence holds, though each pair can stand


_EN_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# a sentence ends at . ! ? or an ellipsis, optionally followed by closing quotes or brackets, then
# white space; a line break always ends one
_EN_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\s*\n+\s*")


_EN_CLAUSE_BREAK = re.compile(r"[,;:()\[\]\"“”…/]|\s[-–—]+\s|[–—]")


def _en_clauses(sentence: str) -> list[str]:
    return [c for c in _EN_CLAUSE_BREAK.split(sentence) if c.strip()]


def _en_tokens(text: str) -> list[str]:
    return _EN_WORD.findall(text.replace("’", "'"))


_EN_ABBREVIATIONS = frozenset("e.g. i.e. etc. vs. mr. mrs. ms. dr. st. approx. no. p.s.".split())


def _en_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for part in _EN_SENTENCE_END.split(text.strip()):
        part = part.strip()
        if not part:
            continue
        if sentences and sentences[-1].rsplit(None, 1)[-1].lower() in _EN_ABBREVIATIONS:
            sentences[-1] += " " + part  # "e.g. the lease" is one sentence
        else:
            sentences.append(part)
    return sentences


def _classes(**classes: str) -> dict[str, frozenset[str]]:
    return {name: frozenset(words.split()) for name, words in classes.items()}


_EN_CLASSES = _classes(  # class names are upper case, so a rule can also name a (lower-case) word
    # determiners and possessives: a noun (or an adjective) comes next
    DET="a an the my your their our its his",
    # subject pronouns; SUBJ_ONLY are never objects ("you" and "it" can be: "give you the")
    SUBJ="i you he she we they",
    SUBJ_ONLY="i he she we they",
    BE="is are am was were",
    # finite auxiliaries that are never nouns ("can", "will", "may", "might", "must" can be)
    AUX="has had does did would could should",
    MODAL="would could should",
    CONJ="and or but because nor",
    PREP="of with from into about for at by",
    # a pronoun or auxiliary fused with a verb: a clause of its own, never after a determiner,
    # a preposition or "to", and never next to another one ("I'd had" is fine: not followed by BE)
    CONTR="i'm you're it's that's he's she's we're they're i've you've we've they've i'd you'd he'd she'd we'd they'd "
    "i'll you'll it'll he'll she'll we'll they'll don't doesn't didn't can't won't wouldn't couldn't shouldn't isn't "
    "aren't wasn't weren't hasn't haven't hadn't",
    # words that open a clause of their own, never right after a determiner
    OPENER="what how when where why who which whom whose if this these those not",
    # "do" as an auxiliary: a question's subject comes next, then a bare verb, never a form of "be"
    DO="do does did",
    # subjects for the agreement pairs below
    HE="he she it",
    PLURAL="we they",
)
_EN_PAIRS = frozenset(
    [("DET", c) for c in ("DET", "SUBJ", "BE", "AUX", "CONJ", "PREP", "to", "OPENER", "CONTR")]  # "the is", "your I", "the how"
    + [("PREP", "CONTR"), ("to", "CONTR"), ("CONTR", "CONTR"), ("CONTR", "BE")]  # "of don't", "to it's", "you're it's", "it's is"
    + [("SUBJ_ONLY", "DET")]  # "I the"
    + [("BE", "BE"), ("AUX", "BE"), ("AUX", "AUX")]  # "is are", "has is", "would could"
    + [("MODAL", "to")]  # "could to"
    + [("to", c) for c in ("BE", "AUX")]  # "to is", "to would"
    + [("PREP", c) for c in ("BE", "AUX")]  # "of is", "with would"
    + [("CONJ", "CONJ")]  # "and but"
    + [("i", w) for w in ("is", "are", "has")]  # "I is"
    + [("you", w) for w in ("is", "am", "has")]
    + [("HE", w) for w in ("am", "are")]
    + [("PLURAL", w) for w in ("is", "am", "has")]
)
_EN_FINE_PAIRS = frozenset(
    {("had", "had"), ("is", "is"), ("and", "or"), ("or", "and")}  # "had had", "what it is is", "and/or"
    | {(p, "it's") for p in _EN_CLASSES["PREP"] | {"to"}}  # "because of it's size": a common slip, not a splice
)

ENGLISH = Language(
    code="en",
    tokens=_en_tokens,
    sentences=_en_sentences,
    clauses=_en_clauses,
    fold=str.lower,
    word_classes=_EN_CLASSES,
    broken_pairs=_EN_PAIRS,
    broken_triples=frozenset({("DO", "SUBJ", "BE")}),  # "what do you were": a question spliced onto a statement
    fine_pairs=_EN_FINE_PAIRS,
    doubled=frozenset({"DET", "SUBJ", "CONJ", "PREP", "to", "BE", "AUX"}),
    no_final=frozenset({"DET", "CONJ"}),
    continuation=frozenset({"DET", "CONJ", "PREP", "to", "SUBJ", "BE", "AUX", "CONTR"}),
    restarts=frozenset(
        "it it's you you're your what how maybe not one so and but that this anyone honestly of hearing looking on two "
        "from consider feeling everything don't who when where why there here".split()
    ),
    always_capitalised=frozenset("i i'm i've i'd i'll".split()),
    end_punctuation=".!?…",
    dangling_punctuation=",:;-–—",
)

# Chinese: no spaces, so a token is a word of a small list (function words, and words whose
# characters would otherwise read as a broken pair: 了解, 的确, 跟着, ...), else one character.
_ZH_WORDS = frozenset(
    """但是 因为 所以 而且 或者 可是 如果 虽然 并且 不过 然后 还是 我们 你们 他们 她们 它们 自己 了解 了不起 的确 的话 目的 为了
    除了 得了 算了 罢了 极了 对了 好了 干吗 吗啡 酒吧 网吧 过去 过程 过分 过来 过瘾 过得 着急 着想 着落 地方 地步 地址 地位 被子
    被窝 把握 一把 温和 平和 缓和 随和 柔和 暖和 和气 和睦 总和 过错 过失 过度 过于 过敏 过年 过节 过后 过期 过世 落地 跟着 接着 随着 顺着 沿着 向着 为着 看着 想着 等着 陪着 很多 最后 最近 最好 最初 和好 和平 很少 很久 最少 最多""".split()
)
_ZH_MAX_WORD = max(map(len, _ZH_WORDS))
_HAN_RUN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_PIECE = re.compile(f"[{_HAN_RUN}]+|[A-Za-z\\u00c0-\\u024f]+(?:['’-][A-Za-z\\u00c0-\\u024f]+)*|[0-9]+")
_ZH_SENTENCE = re.compile(r"[^。！？!?…\n]+(?:[。！？!?…]+[”’」』）)]*)?|[。！？!?…]+[”’」』）)]*")
_ZH_CLAUSE_BREAK = re.compile(r"[，、；：,;:（）()“”‘’「」『』《》〈〉\"—…~～\s]+")


def _zh_tokens(text: str) -> list[str]:
    tokens = []
    for piece in _ZH_PIECE.findall(text):
        if not re.match(f"[{_HAN_RUN}]", piece):
            tokens.append(piece)
            continue
        i = 0
        while i < len(piece):  # forward maximum matching on the word list
            size = next((n for n in range(min(_ZH_MAX_WORD, len(piece) - i), 1, -1) if piece[i : i + n] in _ZH_WORDS), 1)
            tokens.append(piece[i : i + size])
            i += size
    return tokens


def _zh_sentences(text: str) -> list[str]:
    return [s.strip() for s in _ZH_SENTENCE.findall(text.strip()) if s.strip()]


def _zh_clauses(sentence: str) -> list[str]:
    return [c for c in _ZH_CLAUSE_BREAK.split(sentence) if c.strip()]


_ZH_CLASSES = _classes(
    STRUCT="的",  # the structural particle: something comes after it
    ASP="了 着 过",  # aspect particles: after a verb or adjective
    FINAL="吗 呢",  # question particles: they end a clause
    PRON="你 我 他 她 它",
    CONJ="和 但是 因为 所以 而且 或者 可是 如果 虽然 并且",
    PREP="把 被",  # a noun comes next
    ADV="很 最",  # an adjective or verb comes next
)
_ZH_PAIRS = frozenset(
    [("STRUCT", "STRUCT"), ("STRUCT", "ASP")]  # "的的", "的了"
    + [("FINAL", c) for c in ("STRUCT", "ASP", "FINAL", "PRON", "CONJ", "PREP", "ADV")]  # "吗你": a question ran on
    + [(c, p) for c in ("PREP", "ADV", "CONJ") for p in ("STRUCT", "ASP", "FINAL")]  # "把的", "很了", "因为吗"
)

CHINESE = Language(
    code="zh",
    tokens=_zh_tokens,
    sentences=_zh_sentences,
    clauses=_zh_clauses,
    fold=str.lower,
    word_classes=_ZH_CLASSES,
    broken_pairs=_ZH_PAIRS,
    fine_pairs=frozenset(),
    doubled=frozenset({"STRUCT", "FINAL", "PRON", "CONJ", "PREP"}),
    no_final=frozenset({"CONJ", "PREP", "ADV"}),
    continuation=frozenset({"STRUCT", "CONJ", "PREP", "ADV"}),
    restarts=frozenset(),
    always_capitalised=frozenset(),
    end_punctuation="。！？!?…~～.",
    dangling_punctuation="，、：；,:;—-",
    ngram=6,  # tokens: about four English words; natural Chinese repeats shorter phrases for emphasis ("十二块钱，就十二块钱")
    sentence_ngram=6,
    cased=False,
    paired_marks=(("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("《", "》"), ("（", "）")),
)

LANGUAGES: dict[str, Language] = {"en": ENGLISH, "zh": CHINESE}  # keyed by Language.code; a new language is one more entry


def language_for(code: str) -> Language:
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(f"no coherence rules for language {code!r}; known: {sorted(LANGUAGES)}") from None


# ----------------------------------------------------------------------------------------------
# the checks

REUSED_SHARE = 0.75  # share of a reply's 4-grams (or sentences) seen in earlier replies that makes it reused
MAX_STRATEGIES = 3  # distinct strategies a person takes in from one reply
UNCOUNTED_STRATEGIES = frozenset({"question", "feelings"})  # they ride along with the others
SALAD_FLAGS = frozenset({"spliced", "repetitive", "truncated"})  # text a person would not have written


@dataclass(frozen=True)
class _Parsed:
    """A text split once into sentences, clauses and words, for all the checks."""

    clauses: tuple[tuple[tuple[str, ...], ...], ...]  # per sentence, per clause: its tokens as written
    words: tuple[tuple[str, ...], ...]  # per sentence: its tokens folded
    all_words: tuple[str, ...]  # all of them in a row
    lower_starts: tuple[bool, ...]  # per sentence: it starts with a lower-case letter, not after an ellipsis
    capital_starts: bool  # some sentence starts with a capital letter (other than the word "I")


_OPENING_MARKS = "\"'“‘(*_ "


@lru_cache(maxsize=8192)
def _parse(text: str, language: str) -> _Parsed:
    lang = language_for(language)
    sentences = lang.sentences(text)
    clauses = tuple(tuple(tuple(lang.tokens(c)) for c in lang.clauses(s)) for s in sentences)
    words = tuple(tuple(lang.fold(t) for clause in sentence for t in clause) for sentence in clauses)
    firsts = [s.lstrip("(*_ ")[:1] for s in sentences]  # a quotation may start in lower case: not counted
    trailing = [s.rstrip(_OPENING_MARKS + ")]”’").endswith(("...", "…")) for s in sentences]
    lower_starts = tuple(lang.cased and first.islower() and not (i and trailing[i - 1]) for i, first in enumerate(firsts))
    # an uncased script: every writer "capitalises", i.e. several sentences mean the writer punctuates
    capital_starts = not lang.cased or any(first.isupper() and (not w or w[0] not in lang.always_capitalised) for first, w in zip(firsts, words, strict=True))
    return _Parsed(clauses, words, tuple(w for sentence in words for w in sentence), lower_starts, capital_starts)


@dataclass(frozen=True)
class _Tables:
    """A language's rules spelled out word by word, for O(1) look-ups."""

    classes: Mapping[str, frozenset[str]]  # word -> its classes and itself
    broken: frozenset[tuple[str, str]]  # word pairs that never stand side by side
    doubled: frozenset[str]  # words never said twice in a row


@lru_cache(maxsize=8)
def _tables(language: str) -> _Tables:
    lang = language_for(language)
    classes: dict[str, set[str]] = {}
    for name, words in lang.word_classes.items():
        for word in words:
            classes.setdefault(word, {word}).add(name)
    members = lambda name: lang.word_classes.get(name, frozenset((name,)))  # noqa: E731  (a class, or one word)
    broken = {(a, b) for x, y in lang.broken_pairs for a in members(x) for b in members(y)} - lang.fine_pairs
    doubled = {w for w, names in classes.items() if not names.isdisjoint(lang.doubled)} - {a for a, b in lang.fine_pairs if a == b}
    return _Tables({w: frozenset(n) for w, n in classes.items()}, frozenset(broken), frozenset(doubled))


def _classes_of(word: str, language: str) -> frozenset[str]:
    return _tables(language).classes.get(word) or frozenset((word,))


def _broken_pair(a: str, b: str, lang: Language) -> bool:
    tables = _tables(lang.code)
    return (a, b) in tables.broken or (a == b and a in tables.doubled)


def _broken_triple(words: Sequence[str], lang: Language) -> bool:
    def fits(word: str, name: str) -> bool:
        return word == name or name in _classes_of(word, lang.code)

    return any(all(fits(w, name) for w, name in zip(words, triple, strict=True)) for triple in lang.broken_triples)


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _has_duplicate(items: Sequence[object]) -> bool:
    return len(set(items)) < len(items)


def has_repeated_ngram(text: str, n: int | None = None, language: str = "en") -> bool:
    """True when some run of `n` words occurs twice in `text` (overlapping runs count); `n`
    defaults to the language's phrase size (4 English words, 6 Chinese tokens)."""
    return _has_duplicate(_ngrams(_parse(text, language).all_words, n or language_for(language).ngram))


def _repeats_inside(parsed: _Parsed, lang: Language) -> bool:
    if _has_duplicate(_ngrams(parsed.all_words, lang.ngram)):
        return True
    return any(_has_duplicate(_ngrams(words, lang.sentence_ngram)) for words in parsed.words)


def _unbalanced_marks(text: str, lang: Language) -> list[str]:
    """Paired marks (Chinese quotation marks, brackets) opened twice, closed unopened or left open."""
    marks = []
    for opening, closing in lang.paired_marks:
        depth = 0
        for char in text:
            if char == opening:
                if depth:
                    marks.append(opening + opening)
                depth += 1
            elif char == closing:
                if not depth:
                    marks.append(closing)
                depth = max(0, depth - 1)
        if depth:
            marks.append(opening)
    return marks


def _ends_unfinished(words: Sequence[str], lang: Language) -> bool:
    """The sentence's last word is one no sentence ends on (`Language.no_final`)."""
    return bool(words) and not _classes_of(words[-1], lang.code).isdisjoint(lang.no_final)


def _splice_marks(parsed: _Parsed, lang: Language) -> list[str]:
    """Where the text reads as sentences broken off and joined (empty for whole sentences)."""
    marks = []
    last = len(parsed.clauses) - 1
    for index, sentence in enumerate(parsed.clauses):
        for raw in sentence:
            words = [lang.fold(t) for t in raw]
            marks += [f"{a} {b}" for a, b in pairwise(words) if _broken_pair(a, b, lang)]
            marks += [" ".join(words[i : i + 3]) for i in range(len(words) - 2) if _broken_triple(words[i : i + 3], lang)]
            # "... with the Maybe they ...": a lower-case run broken by a capitalised sentence opener
            marks += [
                f"{raw[i - 1]} {raw[i]}"
                for i in range(1, len(raw) - 1)
                if words[i] in lang.restarts and raw[i][:1].isupper() and raw[i - 1][:1].islower() and raw[i + 1][:1].islower()
            ]
        if index and parsed.lower_starts[index] and parsed.capital_starts:
            # "... weighing on you. wrong with the insurance": a writer who capitalises lost this sentence's start
            marks.append(f"{parsed.words[index - 1][-1] if parsed.words[index - 1] else ''}. {sentence[0][0] if sentence and sentence[0] else ''}")
        sentence_words = parsed.words[index]
        if index < last and _ends_unfinished(sentence_words, lang):
            marks.append(f"{sentence_words[-1]}.")
    return marks


def is_spliced(text: str, language: str = "en") -> bool:
    """True when `text` reads as sentences broken off and joined (see the module's table)."""
    lang = language_for(language)
    return bool(_splice_marks(_parse(text, language), lang) or _unbalanced_marks(text, lang))


def ends_dangling(text: str, language: str = "en") -> bool:
    """True when `text` stops on a mark that leaves a sentence hanging (a comma, a colon, a dash)."""
    last = text.rstrip()[-1:]
    return bool(last) and last in language_for(language).dangling_punctuation


def is_truncated(text: str, language: str = "en") -> bool:
    """True when `text` trails off mid-sentence (see the module's table)."""
    lang = language_for(language)
    stripped = text.rstrip().rstrip("\"'”’)]*_ ")
    if not stripped:
        return False
    if ends_dangling(stripped, language):
        return True
    if stripped[-1] in lang.end_punctuation or not stripped[-1].isalnum():  # finished, or closed by a symbol or emoji
        return False
    parsed = _parse(text, language)
    words = parsed.all_words
    if not words:
        return False
    # several sentences from a writer who capitalises them, the last unfinished; or a word no reply ends on
    return len(parsed.words) > 1 and parsed.capital_starts or not _classes_of(words[-1], language).isdisjoint(lang.continuation)


def ends_on_unfinished_word(text: str, language: str = "en") -> bool:
    """True when the last sentence of `text` ends on a word no sentence ends on (`Language.no_final`:
    in English a determiner or a conjunction), even where an end mark closes it ("... hearing about
    the."): a fragment cut short and punctuated, which `is_truncated` takes as finished."""
    last = next((words for words in reversed(_parse(text, language).words) if words), ())
    return _ends_unfinished(last, language_for(language))


@lru_cache(maxsize=8192)
def _phrases(text: str, language: str) -> tuple[frozenset[tuple[str, ...]], tuple[tuple[str, ...], ...]]:
    """A text's word 4-grams, and its sentences of at least 4 words, for the reuse check (Chinese:
    token 6-grams and sentences of at least 6 tokens)."""
    parsed = _parse(text, language)
    n = language_for(language).ngram
    return frozenset(_ngrams(parsed.all_words, n)), tuple(w for w in parsed.words if len(w) >= n)


def reused_share(text: str, earlier_replies: Sequence[str], language: str = "en") -> float:
    """The larger of: the share of `text`'s word 4-grams, and the share of its sentences, that
    appeared in `earlier_replies`."""
    language_for(language)
    grams, sentences = _phrases(text, language)
    if not earlier_replies or not grams:
        return 0.0
    seen_grams: set[tuple[str, ...]] = set()
    seen_sentences: set[tuple[str, ...]] = set()
    for earlier in earlier_replies:
        earlier_grams, earlier_sentences = _phrases(earlier, language)
        seen_grams |= earlier_grams
        seen_sentences.update(earlier_sentences)
    gram_share = len(grams & seen_grams) / len(grams)
    sentence_share = sum(s in seen_sentences for s in sentences) / len(sentences) if sentences else 0.0
    return max(gram_share, sentence_share)


@dataclass(frozen=True)
class ReplyQuality:
    """What `reply_quality` found; `flags` holds the names of the rules that fired."""

    flags: frozenset[str]
    splices: tuple[str, ...]  # the word pairs or sentence ends that read as splices
    reused: float  # share of the reply already said in earlier replies

    @property
    def salad(self) -> bool:
        """Broken, repeated or trailing text: what a person would not have written."""
        return not self.flags.isdisjoint(SALAD_FLAGS)


@lru_cache(maxsize=8192)
def _text_flags(text: str, language: str) -> tuple[frozenset[str], tuple[str, ...]]:
    lang = language_for(language)
    parsed = _parse(text, language)
    flags = set()
    splices = tuple(_splice_marks(parsed, lang) + _unbalanced_marks(text, lang))
    if splices:
        flags.add("spliced")
    if _repeats_inside(parsed, lang):
        flags.add("repetitive")
    if is_truncated(text, language):
        flags.add("truncated")
    return frozenset(flags), splices


def is_salad(text: str, language: str = "en") -> bool:
    """True when `text` is spliced, repetitive or truncated: what a person would not have written."""
    language_for(language)
    return not _text_flags(text, language)[0].isdisjoint(SALAD_FLAGS)


def reply_quality(text: str, earlier_replies: Sequence[str] = (), strategies: Collection[str] = (), language: str = "en") -> ReplyQuality:
    """Judge `text` as a whole message, given the same agent's `earlier_replies` in the dialogue
    and, optionally, the `strategies` a strategy detector found in it (for `stacked`)."""
    language_for(language)  # a clear error for an unknown language, before any cache
    flags, splices = _text_flags(text, language)
    share = reused_share(text, earlier_replies, language)
    extra = set()
    if share >= REUSED_SHARE:
        extra.add("reused")
    if len(set(strategies) - UNCOUNTED_STRATEGIES) > MAX_STRATEGIES:
        extra.add("stacked")
    return ReplyQuality(flags | extra, splices, round(share, 4))


def clear_caches() -> None:
    """Empty the per-text caches (they only save time: results never depend on them)."""
    for cached in (_parse, _text_flags, _phrases):
        cached.cache_clear()
