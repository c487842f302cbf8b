"""Text side of the method: expression -> words, effective words, primary word, token roles.

Why: PWEM needs to know, per text token of the VLP, which ones are effective (E) and which
belong to the primary word (P) (method.md §2). The tagger/parser sees words, the VLP sees
subword tokens; this module bridges them through character offsets so no tokenizer (and no
model class) is imported here.

Words are the whitespace-separated tokens of the expression. A word split by the tagger
("man's" -> "man", "'s") is one word, effective if any piece is; a word split by the VLP
tokenizer into subwords owns all of them.

The command normaliser lives in command.py and is re-exported here (contract names).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .backend import words_of_tokens
from .command import (
    CommandError,
    EmptyCommandError,
    NonEnglishCommandError,
    NormaliserSettings,
    normalise_command,
)
from .english import SPATIAL_WORDS, is_noun_never_adverb
from .nlp_models import BENEPAR_MODEL, _load_benepar, _load_stanza, load_spacy
from .tree import Tree, parse_tree, primary_leaf

__all__ = [
    "CommandError",
    "EmptyCommandError",
    "NonEnglishCommandError",
    "NormaliserSettings",
    "normalise_command",
    "EFFECTIVE_UPOS",
    "Word",
    "ParsedExpression",
    "ExpressionParser",
    "build_prompt",
    "TokenRoles",
    "token_roles",
    "load_spacy",
]

log = logging.getLogger(__name__)

EFFECTIVE_UPOS = frozenset({"NOUN", "VERB", "ADJ", "PROPN", "NUM"})
# Position words stay effective whatever spaCy tags them (it often says ADV, INTJ or VBD:
# "person in back", "guy on right", "left one"); a constituency parse makes them nouns or
# adjectives, which are effective. SPATIAL_WORDS lives in english.py (the command check uses it).
_DETERMINERS = frozenset({"DT", "PDT", "PRP$", "WDT"})
_PHRASE_INNER_UPOS = frozenset({"ADJ", "ADV", "NUM", "NOUN", "PROPN", "VERB"})
# Words that head a phrase standing for an object nothing else names ("left one", "second
# from right"); a constituency parse makes them the NP's noun.
_ONE_WORDS = frozenset(
    "one first second third fourth fifth sixth seventh eighth ninth tenth last".split()
)


@dataclass(frozen=True)
class Word:
    """A whitespace word of the expression: char offsets inside the expression, and the UPOS/PTB
    tag of its representative piece (the first effective tagger piece, else the first piece).
    """

    text: str
    start: int
    end: int
    upos: str
    tag: str


@dataclass(frozen=True)
class ParsedExpression:
    """Tagging and Algorithm-1 result for one expression (indices are word indices)."""

    expression: str
    words: tuple[Word, ...]
    effective: tuple[int, ...]
    primary: int | None
    parser: str  # "stanza" | "benepar" | "spacy"

    @property
    def primary_word(self) -> str | None:
        return None if self.primary is None else self.words[self.primary].text


@dataclass(frozen=True)
class TokenRoles:
    """Token positions (in the VLP's text tokens; CLS = 0) that PWEM needs.

    effective: E, in order, never 0; primary: P (subwords of the primary word's last
    occurrence); valid: L bools, False for padding and the trailing [SEP].
    """

    effective: tuple[int, ...]
    primary: tuple[int, ...]
    valid: torch.Tensor


PARSERS = ("auto", "stanza", "benepar", "spacy")


# ---------------------------------------------------------------- trees from parses
def spacy_tag(tok: Any) -> tuple[str, str]:
    """(UPOS, PTB tag) of a spaCy token with the fallback's corrections.

    The small English model calls many lowercase object nouns proper nouns ("cup", "ball",
    "kid" -> PROPN/NNP), which Algorithm 1 (NN only) would never pick: a lowercase PROPN is
    a NOUN and NNP/NNPS become NN/NNS; a word it calls an adverb that the dictionary knows only
    as a noun is a noun ("surfboard leaning on the wall"). A position word standing as the head
    of a phrase that a determiner opens ("on the left", "the far right") is a noun (NN), as a
    constituency parse makes it; one that modifies a noun after it ("bottom left donut") is an
    adjective (JJ), so the noun stays the head. "one" or an ordinal heading its phrase is the
    noun (NN) when no other word names the object ("left one", "second from right").
    """
    upos, tag = _base_tag(tok)
    if _spatial_head(tok):
        return "NOUN", "NN"
    if _spatial_modifier(tok):
        return "ADJ", "JJ"
    if _one_head(tok):
        return "NOUN", "NN"
    return upos, tag


def _spatial_head(tok: Any) -> bool:
    """A position word that heads its phrase: a determiner before it (over adjectives and
    adverbs only: "the far left") and no noun or adjective after it ("the left cup" is an
    adjective use).
    """
    if tok.text.lower() not in SPATIAL_WORDS or tok.tag_ in ("NN", "NNS"):
        return False
    nxt = tok.nbor(1) if tok.i + 1 < len(tok.doc) else None
    if nxt is not None and (nxt.pos_ in ("NOUN", "PROPN", "ADJ", "NUM") or nxt.tag_ == "NN"):
        return False
    j = tok.i - 1
    while j >= 0:
        prev = tok.doc[j]
        if prev.tag_ in _DETERMINERS:
            return True
        if prev.pos_ not in ("ADJ", "ADV") and prev.text.lower() not in SPATIAL_WORDS:
            return False
        j -= 1
    return False


def _base_tag(tok: Any) -> tuple[str, str]:
    """The tag spaCy gives, with the word-level corrections (lowercase proper nouns, nouns
    the dictionary knows never as adverbs).
    """
    upos, tag = tok.pos_, tok.tag_ or "XX"
    text = tok.text
    if text.islower() and (upos == "PROPN" or tag in ("NNP", "NNPS")):
        upos = "NOUN"
        tag = "NNS" if tag == "NNPS" else ("NN" if tag == "NNP" else tag)
    elif (
        upos == "ADV"
        and text.isalpha()
        and text.islower()
        and text not in SPATIAL_WORDS
        and text not in _ONE_WORDS
        and is_noun_never_adverb(text)
    ):
        upos, tag = "NOUN", "NN"
    return upos, tag


def _names_object(tok: Any) -> bool:
    """A noun that is neither a position word nor "one"/an ordinal."""
    word = tok.text.lower()
    return (
        _base_tag(tok)[0] in ("NOUN", "PROPN")
        and word not in SPATIAL_WORDS
        and word not in _ONE_WORDS
    )


def _spatial_modifier(tok: Any) -> bool:
    """A position word before the noun it modifies, over other position words and adjectives
    ("bottom left donut", "far right bottom donut", "the left most banana").
    """
    if tok.text.lower() not in SPATIAL_WORDS:
        return False
    for nxt in tok.doc[tok.i + 1 :]:
        if _names_object(nxt):
            return True
        if nxt.text.lower() not in SPATIAL_WORDS and nxt.pos_ != "ADJ":
            return False
    return False


def _one_head(tok: Any) -> bool:
    """The word "one" or an ordinal that heads its phrase (no noun, adjective or number after
    it) in an expression where no other word names the object.
    """
    if tok.text.lower() not in _ONE_WORDS:
        return False
    nxt = tok.nbor(1) if tok.i + 1 < len(tok.doc) else None
    if nxt is not None and (
        nxt.pos_ in ("NOUN", "PROPN", "ADJ", "NUM") or nxt.text.lower() in _ONE_WORDS
    ):
        return False
    return not any(_names_object(t) for t in tok.doc if t.i != tok.i)


def _chunks(doc: Any) -> list[tuple[int, int]]:
    """Noun chunks of spaCy as (start, end) token spans, plus determiner-opened spans ending in a
    position word that spaCy left out ("the left" in "two men on the left"), plus a span for
    each noun the corrections made that no chunk holds ("surfboard", "left one"), opened by the
    determiners and adjectives before it.
    """
    spans = [(c.start, c.end) for c in doc.noun_chunks]
    covered = {i for a, b in spans for i in range(a, b)}
    for tok in doc:
        if tok.i in covered or not _spatial_head(tok):
            continue
        start = tok.i
        while start > 0 and doc[start].tag_ not in _DETERMINERS:
            start -= 1
        if not any(i in covered for i in range(start, tok.i + 1)):
            spans.append((start, tok.i + 1))
            covered.update(range(start, tok.i + 1))
    for tok in doc:
        if tok.i in covered or spacy_tag(tok)[1] != "NN":
            continue
        start = tok.i
        while (
            start > 0
            and start - 1 not in covered
            and (doc[start - 1].tag_ in _DETERMINERS or doc[start - 1].pos_ == "ADJ")
        ):
            start -= 1
        spans.append((start, tok.i + 1))
        covered.update(range(start, tok.i + 1))
    return sorted(spans)


def spacy_tree(doc: Any) -> tuple[Tree, list[int]]:
    """Shallow tree from a spaCy Doc: each noun chunk is a base NP, other tokens hang off the
    root; preterminal tags are token.tag_ with spacy_tag's corrections. Returns the tree and the
    token index of each leaf.
    """
    chunk_of: dict[int, int] = {}
    for c, (start, end) in enumerate(_chunks(doc)):
        for i in range(start, end):
            chunk_of[i] = c
    children: list[Tree] = []
    leaf_tokens: list[int] = []
    current: tuple[int, list[Tree]] | None = None
    for tok in doc:
        if tok.is_space:
            continue
        leaf = Tree(spacy_tag(tok)[1], (tok.text,))
        leaf_tokens.append(tok.i)
        c = chunk_of.get(tok.i)
        if current is not None and current[0] != c:
            children.append(Tree("NP", tuple(current[1])))
            current = None
        if c is None:
            children.append(leaf)
        else:
            if current is None:
                current = (c, [])
            current[1].append(leaf)
    if current is not None:
        children.append(Tree("NP", tuple(current[1])))
    return Tree("S", tuple(children)), leaf_tokens


def benepar_tree(doc: Any) -> tuple[Tree, list[int]]:
    """Tree from benepar's per-sentence parse strings (sent._.parse_string), joined under a root.
    Leaves are matched to the Doc's non-space tokens in order.
    """
    sentences = [parse_tree(sent._.parse_string) for sent in doc.sents]
    tree = sentences[0] if len(sentences) == 1 else Tree("ROOT", tuple(sentences))
    tokens = [tok.i for tok in doc if not tok.is_space]
    n_leaves = len(tree.leaves())
    if n_leaves != len(tokens):
        if n_leaves == len(doc):
            tokens = list(range(len(doc)))
        else:
            raise ValueError(f"benepar tree has {n_leaves} leaves for {len(tokens)} tokens")
    return tree, tokens


def stanza_parse(doc: Any) -> tuple[list[tuple[int, str, str, str]], Tree]:
    """Pieces (char offset, text, UPOS, PTB tag) and the constituency tree of a stanza Document
    (sentences joined under one root). Leaves are the stanza words, in order.
    """
    pieces: list[tuple[int, str, str, str]] = []
    trees: list[Tree] = []
    for sent in doc.sentences:
        for token in sent.tokens:
            for word in token.words:
                start = getattr(word, "start_char", None)
                if start is None:
                    start = token.start_char
                pieces.append((int(start), word.text, word.upos, word.xpos or "XX"))
        trees.append(parse_tree(str(sent.constituency)))
    tree = trees[0] if len(trees) == 1 else Tree("ROOT", tuple(trees))
    if len(tree.leaves()) != len(pieces):
        raise ValueError(f"stanza tree has {len(tree.leaves())} leaves for {len(pieces)} words")
    return pieces, tree


# ---------------------------------------------------------------- parser
class ExpressionParser:
    """Tag an expression, find its effective words and its primary word (method.md §2).

    primary_tags: PTB tags that can be the primary word (reference: ("NN",); add "NNS" to
    let plurals count). parser: "auto" (stanza -- the reference's parser -- when stanza and its
    English constituency model are installed, else benepar when benepar_en3 is, else spaCy),
    "stanza" / "benepar" (fail if unavailable) or "spacy". Results are cached per expression.
    On spaCy tags (spacy and benepar paths) position words are always effective (SPATIAL_WORDS)
    and spaCy's lowercase proper nouns count as nouns (spacy_tag).
    """

    def __init__(
        self, primary_tags: Sequence[str] = ("NN",), parser: str = "auto", cache_size: int = 1024
    ):
        if parser not in PARSERS:
            raise ValueError(f"parser must be one of {', '.join(PARSERS)}, not {parser!r}")
        self.primary_tags = tuple(primary_tags)
        self.requested = parser
        self.cache_size = cache_size
        self._cache: OrderedDict[str, ParsedExpression] = OrderedDict()
        self._nlp: Any = None
        self._kind: str | None = None

    @property
    def kind(self) -> str:
        """The parser actually in use ("stanza", "benepar" or "spacy"); loads it on first use."""
        self._ensure()
        assert self._kind is not None
        return self._kind

    def _ensure(self) -> None:
        if self._kind is not None:
            return
        if self.requested in ("auto", "stanza"):
            nlp, why = _load_stanza()
            if nlp is not None:
                self._nlp, self._kind = nlp, "stanza"
                log.info("expression parser: stanza constituency (the reference's parser)")
                return
            if self.requested == "stanza":
                raise RuntimeError(f"parser='stanza' requested but {why}")
            log.info("expression parser: no stanza (%s)", why)
        if self.requested in ("auto", "benepar"):
            nlp, why = _load_benepar()
            if nlp is not None:
                self._nlp, self._kind = nlp, "benepar"
                log.info("expression parser: benepar (%s) on spaCy", BENEPAR_MODEL)
                return
            if self.requested == "benepar":
                raise RuntimeError(f"parser='benepar' requested but {why}")
            log.info("expression parser: spaCy noun chunks (fallback: %s)", why)
        else:
            log.info("expression parser: spaCy noun chunks (requested)")
        self._nlp, self._kind = load_spacy(), "spacy"

    def parse(self, expression: str) -> ParsedExpression:
        """Words, effective word indices and the primary word index of `expression`."""
        hit = self._cache.get(expression)
        if hit is not None:
            self._cache.move_to_end(expression)
            return hit
        self._ensure()
        if self._kind == "stanza":
            pieces, tree = stanza_parse(self._nlp(expression))
            parsed = assemble(
                expression, pieces, tree, list(range(len(pieces))), self.primary_tags, "stanza"
            )
            return self._remember(expression, parsed)
        doc = self._nlp(expression)
        if self._kind == "benepar":
            try:
                tree, leaf_tokens = benepar_tree(doc)
            except ValueError as exc:
                log.warning(
                    "benepar tree unusable for %r (%s); using spaCy noun chunks", expression, exc
                )
                tree, leaf_tokens = spacy_tree(doc)
        else:
            tree, leaf_tokens = spacy_tree(doc)
        parsed = assemble(
            expression,
            [(t.idx, t.text, *spacy_tag(t)) for t in doc if not t.is_space],
            tree,
            leaf_tokens_to_pieces(doc, leaf_tokens),
            self.primary_tags,
            self._kind or "spacy",
            spatial_effective=True,
        )
        return self._remember(expression, parsed)

    def _remember(self, expression: str, parsed: ParsedExpression) -> ParsedExpression:
        self._cache[expression] = parsed
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return parsed


def leaf_tokens_to_pieces(doc: Any, leaf_tokens: list[int]) -> list[int]:
    """Doc token index of each leaf -> index among the Doc's non-space tokens."""
    piece_of = {tok.i: k for k, tok in enumerate(t for t in doc if not t.is_space)}
    return [piece_of[i] for i in leaf_tokens]


def assemble(
    expression: str,
    pieces: Sequence[tuple[int, str, str, str]],
    tree: Tree,
    leaf_pieces: Sequence[int],
    primary_tags: Sequence[str],
    parser: str,
    spatial_effective: bool = False,
) -> ParsedExpression:
    """Combine tagger pieces (char offset, text, UPOS, PTB tag) and a tree into a ParsedExpression.

    Pure function (no spaCy) so the word/piece bookkeeping is testable on its own.
    spatial_effective: position words (SPATIAL_WORDS) are effective whatever their tag.
    """
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", expression)]
    owner = words_of_tokens([(s, s + len(t)) for s, t, _, _ in pieces], spans)
    words: list[Word] = []
    effective: list[int] = []
    for w, (ws, we) in enumerate(spans):
        mine = [p for p, o in zip(pieces, owner) if o == w]
        eff = [p for p in mine if p[2] in EFFECTIVE_UPOS]
        rep = eff[0] if eff else (mine[0] if mine else (ws, expression[ws:we], "X", "XX"))
        words.append(Word(expression[ws:we], ws, we, rep[2], rep[3]))
        if eff or (spatial_effective and _word_key(expression[ws:we]) in SPATIAL_WORDS):
            effective.append(w)
    upos = [pieces[k][2] for k in leaf_pieces]
    leaf = primary_leaf(tree, primary_tags, upos)
    primary = None if leaf is None else owner[leaf_pieces[leaf]]
    return ParsedExpression(expression, tuple(words), tuple(effective), primary, parser)


# ---------------------------------------------------------------- prompt and token roles
def build_prompt(template: str, expression: str) -> tuple[str, int]:
    """Fill the prompt template ("there is a {}") -> (full text, char offset of the expression)."""
    at = template.find("{}")
    if at < 0:
        raise ValueError(f"prompt template {template!r} has no '{{}}' placeholder")
    return template[:at] + expression + template[at + 2 :], at


def _word_key(text: str) -> str:
    return re.sub(r"^\W+|\W+$", "", text.lower())


def token_roles(
    parsed: ParsedExpression,
    offsets: Sequence[tuple[int, int] | None],
    expression_start: int,
    token_valid: torch.Tensor | Sequence[bool] | None = None,
) -> TokenRoles:
    """Map word roles onto the VLP's text tokens.

    offsets: backend.token_offsets(full prompt text); expression_start: from build_prompt.
    token_valid: L bools (padding and trailing [SEP] False); None derives it from the offsets
    (token 0 and every token with a span are valid).
    P is the subwords of the *last* word whose text equals the primary word's (the reference
    locates the primary word by its last occurrence); invalid (truncated) tokens never count.
    """
    n = len(offsets)
    if token_valid is None:
        valid = torch.tensor(
            [i == 0 or offsets[i] is not None for i in range(n)], dtype=torch.bool
        )
    else:
        valid = torch.as_tensor(token_valid, dtype=torch.bool).flatten().cpu()
        if valid.numel() != n:
            raise ValueError(f"token_valid has {valid.numel()} entries for {n} tokens")
    spans = [(expression_start + w.start, expression_start + w.end) for w in parsed.words]
    owner = words_of_tokens(offsets, spans)
    eff = set(parsed.effective)
    effective = tuple(
        j for j in range(1, n) if valid[j] and owner[j] is not None and owner[j] in eff
    )
    primary: tuple[int, ...] = ()
    if parsed.primary is not None:
        key = _word_key(parsed.words[parsed.primary].text)
        last = max(w for w, word in enumerate(parsed.words) if _word_key(word.text) == key)
        primary = tuple(j for j in range(1, n) if valid[j] and owner[j] == last)
    return TokenRoles(effective, primary, valid)
