"""A tiny constituency-tree type, a bracketed-string reader and Algorithm 1 (primary word).

Why here: the primary-word rule (method.md §2, Algorithm 1) is defined on a constituency
tree, whichever parser produced it (benepar's bracketed string, or the shallow tree this
project builds from spaCy's noun chunks). Keeping the rule on a plain tree type makes it
testable on written-out trees such as "(NP (NP (DT the) (NN man)) (PP ...))".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

# Coarse universal POS for a Penn-Treebank tag, used only when a tree comes without
# tagger UPOS (written-out trees): the "last word tagged NOUN" fallback needs it.
_PTB_TO_UPOS = {
    "NN": "NOUN",
    "NNS": "NOUN",
    "NNP": "PROPN",
    "NNPS": "PROPN",
    "VB": "VERB",
    "VBD": "VERB",
    "VBG": "VERB",
    "VBN": "VERB",
    "VBP": "VERB",
    "VBZ": "VERB",
    "JJ": "ADJ",
    "JJR": "ADJ",
    "JJS": "ADJ",
    "CD": "NUM",
    "RB": "ADV",
    "RBR": "ADV",
    "RBS": "ADV",
    "IN": "ADP",
    "TO": "PART",
    "DT": "DET",
    "PRP": "PRON",
    "PRP$": "PRON",
    "CC": "CCONJ",
    "POS": "PART",
}


@dataclass(frozen=True)
class Tree:
    """A constituency-tree node. A preterminal is Tree(tag, (word,)): one string child."""

    label: str
    children: tuple[Union["Tree", str], ...]

    @property
    def is_preterminal(self) -> bool:
        return len(self.children) == 1 and isinstance(self.children[0], str)

    def preterminals(self) -> Iterator["Tree"]:
        """Preterminal nodes in left-to-right (leaf) order."""
        if self.is_preterminal:
            yield self
            return
        for child in self.children:
            if isinstance(child, Tree):
                yield from child.preterminals()

    def leaves(self) -> list[str]:
        return [p.children[0] for p in self.preterminals()]  # type: ignore[misc]

    def tags(self) -> list[str]:
        return [p.label for p in self.preterminals()]

    def __str__(self) -> str:
        if self.is_preterminal:
            return f"({self.label} {self.children[0]})"
        return "(" + " ".join([self.label] + [str(c) for c in self.children]) + ")"


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(text: str) -> Tree:
    """Read a bracketed tree ("(S (NP (DT the) (NN cup)))"); an unlabelled root gets label ""."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise ValueError("empty tree string")
    pos = 0

    def node() -> Tree:
        nonlocal pos
        if tokens[pos] != "(":
            raise ValueError(f"expected '(' at token {pos} in {text!r}")
        pos += 1
        label = ""
        if pos < len(tokens) and tokens[pos] not in "()":
            label = tokens[pos]
            pos += 1
        children: list[Union[Tree, str]] = []
        while pos < len(tokens) and tokens[pos] != ")":
            if tokens[pos] == "(":
                children.append(node())
            else:
                children.append(tokens[pos])
                pos += 1
        if pos >= len(tokens):
            raise ValueError(f"unbalanced brackets in {text!r}")
        pos += 1  # ')'
        if any(isinstance(c, str) for c in children) and len(children) != 1:
            raise ValueError(f"a preterminal must hold exactly one word: {label} {children}")
        return Tree(label, tuple(children))

    tree = node()
    if pos != len(tokens):
        raise ValueError(f"trailing text after the tree in {text!r}")
    # "( (S ...))" (PTB files) and "(TOP (S ...))" wrap one real tree.
    while (
        tree.label in ("", "TOP", "ROOT")
        and len(tree.children) == 1
        and isinstance(tree.children[0], Tree)
        and not tree.children[0].is_preterminal
    ):
        tree = tree.children[0]
    return tree


def _base_label(label: str) -> str:
    """Strip PTB function tags and indices: "NP-SBJ-1" -> "NP" (but keep "-NONE-")."""
    if label.startswith("-"):
        return label
    return re.split(r"[-=]", label, maxsplit=1)[0]


def _has_np_below(node: Tree) -> bool:
    for child in node.children:
        if isinstance(child, Tree) and not child.is_preterminal:
            if _base_label(child.label) == "NP" or _has_np_below(child):
                return True
    return False


def innermost_nps(tree: Tree) -> list[tuple[int, Tree]]:
    """NP nodes with no NP below them, left to right, each with the leaf index where it starts.

    Innermost NPs never contain one another, so pre-order is left-to-right order.
    """
    out: list[tuple[int, Tree]] = []
    counter = 0

    def walk(node: Tree) -> None:
        nonlocal counter
        if node.is_preterminal:
            counter += 1
            return
        if _base_label(node.label) == "NP" and not _has_np_below(node):
            out.append((counter, node))
        for child in node.children:
            if isinstance(child, Tree):
                walk(child)

    walk(tree)
    return out


def primary_leaf(
    tree: Tree, primary_tags: Sequence[str] = ("NN",), upos: Sequence[str] | None = None
) -> int | None:
    """Algorithm 1: leaf index of the primary word, or None.

    The leftmost innermost NP that contains a preterminal tagged with one of primary_tags
    (reference: only "NN"), then the rightmost such preterminal inside it. Fallback: the
    last leaf whose UPOS is NOUN (upos: one per leaf, from the tagger; derived from the PTB
    tag when not given). Else None.
    """
    tags = set(primary_tags)
    for start, np_node in innermost_nps(tree):
        inner = list(np_node.preterminals())
        hits = [i for i, p in enumerate(inner) if p.label in tags]
        if hits:
            return start + hits[-1]
    if upos is None:
        upos = [_PTB_TO_UPOS.get(t, "X") for t in tree.tags()]
    nouns = [i for i, u in enumerate(upos) if u == "NOUN"]
    return nouns[-1] if nouns else None
