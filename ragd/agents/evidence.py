"""Evidence: follow-up queries for multi-hop questions, passage fusion and sentence selection.

Prefill is the latency floor of a small model on CPU (DESIGN.md §9), so the model sees a few
sentences from a few passages, not whole chunks: each chosen passage contributes its sentences
that best match the question. Multi-hop questions ("the woman who portrayed X ...") need a
second search for the entity the first passages name; comparison questions ("A or B?") need one
search per named entity. Both are found without a model call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ragd.agents.state import Passage
from ragd.retrieval.base import Embedder, SearchHit
from ragd.retrieval.sentences import REMOVED_MARKER, split_sentences, stored_sentence_vectors

_WORD = re.compile(r"[\w'\u2019]+", re.UNICODE)
_CAP = r"(?:[A-Z0-9][\w'\u2019.\-&]*)"
_ENTITY = re.compile(
    rf"\"[^\"]{{2,60}}\"|{_CAP}(?:\s+(?:of|the|de|del|da|and|for|von|van|du|la|le|&)?\s*{_CAP})*"
)
STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being what which who
    whom whose when where why how that this these those it its as than then there their they he she his
    her him them we you i do does did done has have had not no yes into about after before also both
    either neither one two same other such can could would should will may might shall over under
    between during since until while many much more most less least name named known called
    """.split()
)
_MAX_SENTENCE_WORDS = 45


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower().strip("'\u2019") for w in _WORD.findall(text)]


def content_words(text: str) -> set[str]:
    """Word tokens that carry meaning (no stopwords, no 1-letter tokens)."""
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def _clip(sentence: str) -> str:
    parts = sentence.split()
    return sentence if len(parts) <= _MAX_SENTENCE_WORDS else " ".join(parts[:_MAX_SENTENCE_WORDS]) + " ..."


def title_of(hit: SearchHit) -> str:
    """A human title for a hit: its section heading, a title field, or its source name."""
    for value in (hit.payload.get("title"), hit.section, hit.source):
        if isinstance(value, str) and value.strip():
            name = value.strip().rsplit("/", 1)[-1]
            return re.sub(r"\.(md|txt|html?|pdf|docx?)$", "", name, flags=re.IGNORECASE)[:200]
    return hit.document_id


def entities(text: str, exclude: str = "") -> list[str]:
    """Capitalised names, numbers and quoted titles in ``text`` that ``exclude`` does not contain."""
    seen: list[str] = []
    low = exclude.lower()
    for match in _ENTITY.finditer(text):
        name = re.sub(r"['\u2019]s$", "", match.group(0).strip(" \"'.,;:"))  # possessive
        if len(name) < 3 or name.lower() in STOPWORDS or name.lower() in low:
            continue
        if not any(c.isalpha() for c in name):
            continue
        if name not in seen:
            seen.append(name)
    return seen


def question_entities(question: str) -> list[str]:
    """Named things in the question itself (each gets its own search: comparison questions)."""
    body = (
        question[0].lower() + question[1:] if question else question
    )  # the first word is capitalised anyway
    return [e for e in entities(body) if len(content_words(e)) >= 1][:3]


def link_name(title: str) -> str:
    """How other documents name the document ``title``: without a qualifier in brackets
    ("Alien (film)" -> "Alien"); empty when too generic to count as a link (one short word)."""
    name = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
    return name if len(content_words(name)) >= 2 or len(name) >= 8 else ""


def names(text: str, title: str) -> bool:
    """Whether ``text`` names the document ``title`` (see :func:`link_name`)."""
    name = link_name(title)
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def leads_to(passage: Passage, other: Passage) -> bool:
    """Whether ``passage`` names ``other``'s subject (a link from one document to another).

    Mentions of the passage's own subject do not count: "Brown State Fishing Lake ..." names
    itself, not the page "Fishing Lake", and a namesake is not a link.
    """
    own = link_name(passage.title)
    if own and own.lower() == link_name(other.title).lower():
        return False  # a namesake ("Johnny Angel" the film and "Johnny Angel (song)")
    text = passage.body
    if own and own.lower() not in other.title.lower():
        text = re.sub(rf"(?<!\w){re.escape(own)}(?!\w)", " ", text, flags=re.IGNORECASE)
    return names(text, other.title)


def linked_first(passages: Sequence[Passage], limit: int, window: int) -> list[Passage]:
    """``limit`` passages: the best one, then those it names, then those among the first
    ``window`` that name it, then the rest in order.

    A multi-hop question's second passage is about something the first one names, and it
    matches the question itself poorly, so the searches rank it low. HotpotQA dev100, over each
    question's ten paragraphs: 88 of 141 passages a supporting paragraph names are supporting
    too (62%), against 88 of 239 passages that name a supporting paragraph (37%, mostly other
    pages about the same thing), so forward links go first.
    """
    if not passages:
        return []
    top, rest = passages[0], list(passages[1:])
    # A name is a strong link at any rank; being named by is weaker, so only near the top.
    named = [p for p in rest if leads_to(top, p)]
    naming = [p for p in rest[: max(0, window - 1)] if p not in named and leads_to(p, top)]
    chosen = {p.key for p in named + naming}
    return [top, *named, *naming, *[p for p in rest if p.key not in chosen]][:limit]


def link_origins(passages: Sequence[Passage], origins: dict[str, list[str]]) -> None:
    """Record on each passage which passages led to it (through the queries that found it)."""
    for passage in passages:
        for query in passage.queries:
            for key in origins.get(query, []):
                if key != passage.key and key not in passage.via:
                    passage.via.append(key)


def fuse(results: Sequence[tuple[str, float, Sequence[SearchHit]]], k: int = 30) -> list[Passage]:
    """Reciprocal-rank fusion of several searches (query, weight, hits) into passages, best first."""
    passages: dict[str, Passage] = {}
    for query, weight, hits in results:
        for rank, hit in enumerate(hits):
            add = weight / (k + rank + 1)
            passage = passages.get(hit.point_id)
            if passage is None:
                passages[hit.point_id] = Passage(hit=hit, title=title_of(hit), score=add, queries=[query])
            else:
                passage.score += add
                if query not in passage.queries:
                    passage.queries.append(query)
    return sorted(passages.values(), key=lambda p: p.score, reverse=True)


def slot_order(
    passages: Sequence[Passage], results: Sequence[tuple[str, float, Sequence[SearchHit]]]
) -> list[Passage]:
    """The main query's two best passages, then each follow-up query's best new one, then the rest.

    Fused scores alone let a passage that several weak queries found push out the one passage a
    bridge query was for; giving each query a slot keeps every hop represented in the evidence.
    """
    by_key = {p.key: p for p in passages}
    order: list[str] = []
    main = [h.point_id for h in results[0][2]] if results else []
    order += [k for k in main[:2] if k in by_key]
    for _, _, hits in results[1:]:
        for hit in hits:
            if hit.point_id not in order and hit.point_id in by_key:
                order.append(hit.point_id)
                break
    order += [p.key for p in passages if p.key not in order]
    return [by_key[k] for k in order]


class SentenceScorer:
    """Scores sentences against a question: embedding similarity plus word overlap.

    ``vectors`` is the turn's cache of embeddings by text: the question and the sentences of the
    top passages are scored both for the second hop and for the evidence, and each encoder pass
    waits for the shared encoder, so a turn embeds each text once. The sentences of a chunk come
    with in-context vectors that ingestion stored (:meth:`adopt`); only a sentence without one
    (an older chunk, a passage the context guard rewrote) is encoded here. On dev100 (three runs
    each, 2 cores) retrieving and grading took 55-67 instead of 274-327 ms a question (median),
    and context_recall went from 0.775 to 0.795.
    """

    def __init__(self, embedder: Embedder | None, vectors: dict[str, Any] | None = None) -> None:
        self._embedder = embedder
        self._vectors: dict[str, Any] = {} if vectors is None else vectors

    def adopt(self, hits: Iterable[SearchHit]) -> None:
        """Take the stored sentence vectors of ``hits`` that this scorer's embedder made."""
        if self._embedder is None:
            return
        name, dim = self._embedder.name, self._embedder.dim
        for hit in hits:
            for sentence, vector in stored_sentence_vectors(hit.text, hit.payload, name, dim).items():
                self._vectors.setdefault(sentence, vector)

    def score(self, question: str, sentences: Sequence[str]) -> list[float]:
        """One score per sentence, higher is better (roughly 0-2)."""
        if not sentences:
            return []
        asked = content_words(question)
        overlap = [len(asked & content_words(s)) / max(1, len(asked)) for s in sentences]
        if self._embedder is None:
            return overlap
        key = "\x00query\x00" + question  # a query is embedded as a query, apart from passages
        if key not in self._vectors:
            self._vectors[key] = self._embedder.embed_query(question)
        missing = [s for s in dict.fromkeys(sentences) if s not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._embedder.embed_documents(missing), strict=True))
        vectors = np.stack([self._vectors[s] for s in sentences])
        cosine = (vectors @ self._vectors[key]).astype(float).tolist()
        return [c + 0.5 * o for c, o in zip(cosine, overlap, strict=True)]


_MONTHS = frozenset(
    "january february march april may june july august september october november december".split()
)


def _hop_target(name: str, title: str) -> bool:
    """Whether ``name`` may be the next hop from the passage ``title``: not the passage's own
    subject again ("Ralph Franklin Hefferline" on the page "Ralph Hefferline") and not a bare
    date ("15 February 1910"), which no page is about."""
    said = content_words(name)
    if said & content_words(link_name(title) or title):
        return False
    return not all(w.isdigit() or w in _MONTHS for w in said)


def bridge_queries(
    question: str, passages: Sequence[Passage], scorer: SentenceScorer, limit: int = 3
) -> list[tuple[str, str]]:
    """Entities that the best passages name and the question does not: the next hop's queries,
    each with the passage that named it."""
    found: list[tuple[str, str]] = []
    titles = {p.title.lower() for p in passages}
    split = [(passage, split_sentences(passage.hit.text)) for passage in passages[:2]]
    # One scoring call (one encoder pass) for both passages' sentences.
    everything = [s for _, sentences in split for s in sentences]
    scored = dict(zip(everything, scorer.score(question, everything), strict=True))
    for passage, sentences in split:
        if not sentences:
            continue
        best = max(sentences, key=lambda s: scored[s])
        for name in entities(best, exclude=question + " " + passage.title):
            if (
                name.lower() not in titles
                and name not in [f for f, _ in found]
                and _hop_target(name, passage.title)
            ):
                found.append((name, passage.key))
    return found[:limit]


def repeats_title(sentence: str, title: str) -> bool:
    """Whether ``sentence`` repeats ``title`` ("Kiss and Tell Kiss and Tell is a film": a heading
    run into the text). A sentence that merely opens with it keeps it: in "Annie Morton (born
    1970) is a model" the title is the subject, and cutting it left "(born 1970) is a model"."""
    return bool(title) and sentence.startswith(f"{title} {title}")


#: Passages that keep the full sentence budget; the ones after them keep one sentence fewer. On
#: dev100 the first two hold most of what answers cite, and the cut takes 16% of the prompt
#: (median 376 -> 315 tokens, all of it prefill) with context_recall 0.765 -> 0.775.
LEAD_PASSAGES = 2


def select_evidence(
    question: str,
    passages: Sequence[Passage],
    scorer: SentenceScorer,
    *,
    max_passages: int,
    max_sentences: int,
) -> list[Passage]:
    """The passages shown to the model, numbered from 1, each reduced to its best sentences:
    ``max_sentences`` for the first :data:`LEAD_PASSAGES`, one fewer (at least one) after them."""
    chosen = list(passages[:max_passages])
    all_sentences: list[tuple[int, int, str]] = []
    for i, passage in enumerate(chosen):
        for j, sentence in enumerate(split_sentences(passage.hit.text)):
            if repeats_title(sentence, passage.title):
                sentence = sentence[len(passage.title) + 1 :]
            elif sentence == passage.title or REMOVED_MARKER in sentence:
                continue  # a heading, or what the context guard left of an instruction
            all_sentences.append((i, j, sentence))
    scores = scorer.score(question, [s for _, _, s in all_sentences])
    for i, passage in enumerate(chosen):
        mine = [(scores[n], j, s) for n, (pi, j, s) in enumerate(all_sentences) if pi == i]
        mine.sort(key=lambda item: item[0], reverse=True)
        budget = max_sentences if i < LEAD_PASSAGES else max(1, max_sentences - 1)
        keep = sorted(mine[:budget], key=lambda item: item[1])  # original order reads better
        passage.sentences = [_clip(s) for _, _, s in keep]
        passage.number = i + 1
    return chosen
