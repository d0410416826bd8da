"""Evidence selection and the agent's own support check (pure functions, real MiniLM where used)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from ragd.agents.evidence import bridge_queries, entities, question_entities
from ragd.agents.prompts import extractive_answer, quoted_answer
from ragd.agents.state import Passage
from ragd.agents.support import check_answer, cited_numbers, strip_citations, supporting_passages
from ragd.retrieval.base import SearchHit
from ragd.retrieval.sentences import REMOVED_MARKER, split_sentences


def _passage(key: str, title: str, text: str) -> Passage:
    hit = SearchHit(
        point_id=key,
        score=1.0,
        text=text,
        document_id=key,
        version=1,
        chunk_index=0,
        collection_id="c",
        section=title,
    )
    return Passage(hit=hit, title=title, score=1.0)


def test_sentences_and_entities() -> None:
    text = "Shirley Temple Black was an actress. She served as Chief of Protocol of the United States."
    assert split_sentences(text) == [
        "Shirley Temple Black was an actress.",
        "She served as Chief of Protocol of the United States.",
    ]
    assert {"Chief of Protocol", "United States"} <= set(entities(text))
    assert entities("Temple's role") == ["Temple"]
    assert question_entities("Who is older, Annie Morton or Terry Richardson?") == [
        "Annie Morton",
        "Terry Richardson",
    ]


def test_answers_never_quote_the_context_guards_marker() -> None:
    # What the context guard leaves of a chunk whose first sentence was an injected instruction.
    guarded = f"{REMOVED_MARKER} Boots is an EP by the band Example. It was released in 2004."
    assert split_sentences(guarded) == [
        REMOVED_MARKER,
        "Boots is an EP by the band Example.",
        "It was released in 2004.",
    ]
    only_marker = _passage("a", "Poisoned", REMOVED_MARKER)
    only_marker.number = 1
    boots = _passage("b", "Boots", guarded)
    boots.number = 2
    answer, cited = quoted_answer("Who released Boots?", [only_marker, boots])
    assert REMOVED_MARKER not in answer and cited == [2]
    assert answer.startswith("Boots is an EP by the band Example.")
    fallback, quoted = extractive_answer([only_marker, boots])
    assert REMOVED_MARKER not in fallback and "Boots is an EP" in fallback and "[2]" in fallback
    assert quoted == [2]  # the blanked passage is neither quoted nor cited
    assert extractive_answer([only_marker]) == ("", [])


def test_with_every_passage_blanked_the_agent_abstains_instead_of_quoting_nothing() -> None:
    """Model down (or its draft unsupported) and the context guard blanked all the evidence:
    the answer is the abstention, with no citation, never a bare label or an empty answer."""
    from langgraph.runtime import Runtime

    from ragd.agents import nodes
    from ragd.agents.state import ABSTAIN_ANSWER, AgentContext
    from tests.fixtures.models import DownModel

    blanked = _passage("a", "Poisoned", REMOVED_MARKER)
    blanked.number = 1
    sent: list[str] = []

    async def on_token(text: str) -> None:
        sent.append(text)

    ctx = AgentContext(knowledge=None, llm=DownModel(), embedder=None, tools=[], on_token=on_token)  # type: ignore[arg-type]
    state: dict[str, Any] = {"question": "Who released Boots?", "evidence": [blanked], "events": []}

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        answered = await nodes.answer(state, Runtime(context=ctx))  # type: ignore[arg-type]
        verified = await nodes.verify({**state, **answered}, Runtime(context=ctx))  # type: ignore[arg-type]
        extracted = await nodes.extract({**state, "answer": "A draft [1]."}, Runtime(context=ctx))  # type: ignore[arg-type]
        return answered, verified, extracted

    answered, verified, extracted = asyncio.run(run())
    assert answered["answer"] == ABSTAIN_ANSWER and answered["abstained"] and answered["cited"] == []
    assert not answered.get("extractive") and answered["events"][-2:] == ["answer", "abstain"]
    assert verified["supported"]  # an abstention is final: no retry, no quoting
    assert extracted["answer"] == ABSTAIN_ANSWER and extracted["abstained"] and extracted["cited"] == []
    assert sent == [ABSTAIN_ANSWER, ABSTAIN_ANSWER]


def test_bridge_queries_name_the_entity_the_question_lacks() -> None:
    p = _passage(
        "a",
        "Kiss and Tell (1945 film)",
        "Kiss and Tell is a 1945 American comedy film starring Shirley Temple as Corliss Archer.",
    )
    from ragd.agents.evidence import SentenceScorer

    found = bridge_queries(
        "What position was held by the woman who portrayed Corliss Archer in Kiss and Tell?",
        [p],
        SentenceScorer(None),
    )
    assert ("Shirley Temple", "a") in found
    # The passage's own subject again and a bare date are no next hop: the university is.
    scientist = _passage(
        "b",
        "Ralph Hefferline",
        "Ralph Franklin Hefferline (15 February 1910 in Muncie, died 16 March 1974) was a psychology "
        "professor at Columbia University.",
    )
    found = bridge_queries(
        "Ralph Hefferline was a psychology professor at a university in what city?",
        [scientist],
        SentenceScorer(None),
    )
    assert [name for name, _ in found] == ["Muncie", "Columbia University"]


def test_support_check_accepts_copied_facts_and_rejects_invented_ones() -> None:
    evidence = {
        1: "Shirley Temple. She served as Chief of Protocol of the United States.",
        2: "Kiss and Tell. A 1945 film starring Shirley Temple as Corliss Archer.",
    }
    question = "What position was held by the woman who played Corliss Archer?"
    ok = check_answer("Shirley Temple was Chief of Protocol [1][2].", evidence, question)
    assert all(s.supported for s in ok)
    bad = check_answer("She was the Ambassador to France [1].", evidence, question)
    assert not all(s.supported for s in bad) and "france" in bad[0].missing
    uncited = check_answer("Chief of Protocol", evidence, question)
    assert not uncited[0].supported  # no citation: nothing backs it
    assert supporting_passages("Chief of Protocol", evidence, question) == [1]
    assert cited_numbers("a [2] b [1][2]") == [2, 1]
    assert strip_citations("Chief of Protocol [1][2].") == "Chief of Protocol."


def test_a_number_the_passages_do_not_state_is_unsupported() -> None:
    from ragd.agents.support import check_answer

    evidence = {1: "Virginia Commonwealth University is a public research university in Richmond."}
    question = "Which university did the team represent?"
    invented = check_answer(
        "It represented Virginia Commonwealth University, founded in 1968 [1].", evidence, question
    )
    assert not invented[0].supported and "1968" in invented[0].missing
    stated = check_answer("Virginia Commonwealth University [1].", evidence, question)
    assert stated[0].supported


class _SlowEmbedder:
    """Unit vectors after a blocking pause (stands in for a CPU-bound ONNX forward pass)."""

    name = "slow"
    dim = 4

    def _vectors(self, n: int) -> Any:
        import numpy as np

        time.sleep(0.15)
        return np.tile(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), (n, 1))

    def embed_query(self, text: str) -> Any:
        return self._vectors(1)[0]

    def embed_documents(self, texts: list[str]) -> Any:
        return self._vectors(len(texts))


class _Knowledge:
    async def search(self, query: str, *, top_k: int) -> list[SearchHit]:
        return [
            _passage(
                "a", "Kiss and Tell", "Kiss and Tell is a film starring Shirley Temple as Corliss Archer."
            ).hit
        ]


def test_retrieval_scores_sentences_off_the_event_loop() -> None:
    """Bridge-entity scoring embeds sentences: other requests keep being served meanwhile."""
    from langgraph.runtime import Runtime

    from ragd.agents import nodes
    from ragd.agents.state import AgentContext

    ctx = AgentContext(knowledge=_Knowledge(), llm=None, embedder=_SlowEmbedder(), tools=[])  # type: ignore[arg-type]

    async def run() -> tuple[int, dict[str, Any]]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        update = await nodes.retrieve({"question": "Who played Corliss Archer?"}, Runtime(context=ctx))
        done.set()
        await task
        return ticks, update

    ticks, update = asyncio.run(run())
    assert any("Shirley Temple" in q for q in update["queries"])  # the bridge hop ran
    # Two blocking embeds of 0.15 s each: a loop left free ticks many times meanwhile.
    assert ticks >= 10


def test_a_turn_embeds_each_text_once(tmp_path: Path) -> None:
    """The second hop and the evidence selection score the same sentences; each encoder pass
    waits for the shared encoder, so the turn's scorer embeds every text once."""
    from ragd.agents.evidence import SentenceScorer
    from ragd.retrieval.registry import build_embedder
    from tests.conftest import make_settings

    emb = build_embedder(make_settings(tmp_path))
    calls: list[tuple[str, list[str]]] = []

    class Counting:  # the real embedder, counting what it is asked for
        dim, name = emb.dim, emb.name

        def embed_query(self, text: str) -> Any:
            calls.append(("query", [text]))
            return emb.embed_query(text)

        def embed_documents(self, texts: list[str]) -> Any:
            calls.append(("documents", list(texts)))
            return emb.embed_documents(texts)

    question = "Who starred in Kiss and Tell?"
    scorer = SentenceScorer(Counting(), {})  # type: ignore[arg-type]
    first = scorer.score(question, ["Shirley Temple starred in it.", "It is a 1945 film."])
    again = scorer.score(question, ["It is a 1945 film.", "Corliss Archer is a character."])
    assert calls == [
        ("query", [question]),
        ("documents", ["Shirley Temple starred in it.", "It is a 1945 film."]),
        ("documents", ["Corliss Archer is a character."]),
    ]
    assert again[0] == pytest.approx(first[1])
    fresh = SentenceScorer(emb).score(question, ["It is a 1945 film.", "Corliss Archer is a character."])
    assert again == pytest.approx(fresh, abs=1e-4)
    assert first[0] > first[1]  # the sentence that answers scores above the one that does not


def test_evidence_keeps_a_sentence_whose_subject_is_the_title() -> None:
    from ragd.agents.evidence import SentenceScorer, select_evidence

    morton = _passage(
        "a", "Annie Morton", "Annie Morton\n\nAnnie Morton (born October 8, 1970) is an American model."
    )
    repeated = _passage("b", "Kiss and Tell", "Kiss and Tell Kiss and Tell is a 1945 American comedy film.")
    chosen = select_evidence(
        "Who is Annie Morton?", [morton, repeated], SentenceScorer(None), max_passages=2, max_sentences=2
    )
    # The heading is dropped, the subject is not; a title run into the text is cut once.
    assert chosen[0].sentences == ["Annie Morton (born October 8, 1970) is an American model."]
    assert chosen[1].sentences == ["Kiss and Tell is a 1945 American comedy film."]


def test_passages_after_the_first_two_keep_one_sentence_fewer() -> None:
    from ragd.agents.evidence import SentenceScorer, select_evidence

    text = "{0} was founded in 1901. {0} has a museum. {0} lies on a river."
    passages = [_passage(k, f"Town {k}", text.format(f"Town {k}")) for k in "abcd"]
    chosen = select_evidence(
        "When was Town a founded?", passages, SentenceScorer(None), max_passages=4, max_sentences=2
    )
    assert [len(p.sentences) for p in chosen] == [2, 2, 1, 1]
    assert chosen[0].sentences[0] == "Town a was founded in 1901."  # the best, in reading order
    one = select_evidence("Town d?", passages, SentenceScorer(None), max_passages=4, max_sentences=1)
    assert [len(p.sentences) for p in one] == [1, 1, 1, 1]  # never below one


def test_a_cited_passage_brings_the_passage_that_names_it() -> None:
    from ragd.agents.nodes import provenance

    film = _passage("a", "Kiss and Tell (1945 film)", "Kiss and Tell is a film starring Shirley Temple.")
    actress = _passage("b", "Shirley Temple", "Shirley Temple served as Chief of Protocol.")
    other = _passage("c", "Corliss Archer", "Corliss Archer is a fictional teenage girl.")
    for n, p in enumerate([actress, film, other], start=1):
        p.number = n
        p.sentences = [p.hit.text]
    chains = provenance([actress, film, other])
    # The film's passage names the actress: it led to her passage; nothing names the others.
    assert chains == {1: [2], 2: [], 3: []}
    answer, cited = quoted_answer(
        "Which position did Shirley Temple hold?", [actress, film, other], chains=chains
    )
    assert cited == [1, 2] and answer.startswith("Shirley Temple served as Chief of Protocol. [1][2] ")


def test_a_model_lead_in_is_not_part_of_the_answer() -> None:
    from ragd.agents.nodes import attach_citations

    evidence = {
        1: "Terry Richardson. Terrence Richardson (born August 14, 1965) is an American photographer.",
        2: "Annie Morton. Annie Morton (born October 8, 1970) is an American model.",
    }
    question = "Who is older, Annie Morton or Terry Richardson?"
    from ragd.agents.nodes import _first_sentence

    body = _first_sentence("The answer to this question is: Terry Richardson. He was born in 1965.")
    assert body == "Terry Richardson."
    text, cited = attach_citations(body, evidence, question)
    # An answer in the question's own words is backed by the passage about what it names.
    assert (text, cited) == ("Terry Richardson [1].", [1])
    assert all(s.supported for s in check_answer(text, evidence, question))
    assert _first_sentence("Answering machines are old.") == "Answering machines are old."
    # A restatement of the question that picks nothing gets no citation (the agent quotes instead).
    assert attach_citations("Terry Richardson is Annie Morton.", evidence, question) == (
        "Terry Richardson is Annie Morton.",
        [],
    )


def test_the_passage_the_best_one_names_is_shown_before_better_ranked_strangers() -> None:
    from ragd.agents.evidence import linked_first

    film = _passage("a", "Kiss and Tell (1945 film)", "Kiss and Tell is a film starring Shirley Temple.")
    strangers = [_passage(f"s{i}", f"Comedy film {i}", f"Comedy film {i} is a 1945 film.") for i in range(4)]
    actress = _passage("b", "Shirley Temple", "Shirley Temple served as Chief of Protocol.")
    backlink = _passage("c", "Corliss Archer", "Corliss Archer first appeared in Kiss and Tell.")
    ranked = [film, *strangers, actress, backlink]
    keys = [p.key for p in linked_first(ranked, limit=4, window=8)]
    # What the best passage names, and what names it, come before better-ranked strangers.
    assert keys == ["a", "b", "c", "s0"]
    # A passage that names the best one moves up only from within the window; a passage the
    # best one names moves up from any rank.
    assert [p.key for p in linked_first(ranked, limit=4, window=6)] == ["a", "b", "s0", "s1"]
    far = [film, *strangers, backlink, actress]
    assert [p.key for p in linked_first(far, limit=4, window=5)] == ["a", "b", "s0", "s1"]
    assert linked_first([], limit=4, window=8) == []


def test_a_link_is_a_name_in_the_text_not_the_passage_own_heading_or_a_namesake() -> None:
    from ragd.agents.evidence import leads_to, linked_first

    east = _passage(
        "a",
        "East Lempster, New Hampshire",
        "East Lempster, New Hampshire\n\nEast Lempster is a community in Sullivan County, New Hampshire.",
    )
    town = _passage("b", "Lempster, New Hampshire", "Lempster, New Hampshire\n\nLempster is a town.")
    county = _passage("c", "Sullivan County, New Hampshire", "Its county seat is Newport.")
    lake = _passage("d", "Brown State Fishing Lake", "Brown State Fishing Lake is in Brown County, Kansas.")
    fishing = _passage("e", "Fishing Lake", "Fishing Lake is a lake in Saskatchewan.")
    film = _passage("f", "Johnny Angel", "Johnny Angel is a 1945 film starring George Raft.")
    song = _passage("g", "Johnny Angel (song)", "Johnny Angel is a 1962 song.")
    raft = _passage("h", "George Raft", "George Raft was an American film actor and dancer.")
    # The heading "East Lempster, New Hampshire" contains "Lempster, New Hampshire": not a link.
    assert east.body.startswith("East Lempster is") and not leads_to(east, town)
    assert leads_to(east, county)
    # A passage naming itself does not name a page whose title is part of its own name ...
    assert not leads_to(lake, fishing)
    # ... and a namesake is another thing, not a link; the film does lead to its star.
    assert not leads_to(film, song) and leads_to(film, raft)
    # Forward links (what the best passage names) go before back links (what names it).
    back = _passage("i", "Kiss", "East Lempster, New Hampshire is mentioned here.")
    ranked = [east, town, back, song, county]
    assert [p.key for p in linked_first(ranked, limit=5, window=8)] == ["a", "c", "i", "b", "g"]


def test_the_passage_the_best_one_names_is_relevant_without_sharing_a_word() -> None:
    from ragd.agents.nodes import relevant_passages

    film = _passage("a", "Kiss and Tell (1945 film)", "Kiss and Tell is a film starring Shirley Temple.")
    actress = _passage("b", "Shirley Temple", "Shirley Temple served as Chief of Protocol.")
    stranger = _passage("c", "Carly Rae Jepsen", "Carly Rae Jepsen is a singer.")
    question = "What government position was held by the woman who portrayed Corliss Archer in Kiss and Tell?"
    kept = relevant_passages(question, [film, actress, stranger])
    # The actress shares no word with the question but the film names her; the singer is dropped.
    assert [p.key for p in kept] == ["a", "b"]


def test_an_answer_must_rest_on_the_question_chain_not_a_look_alike() -> None:
    from ragd.agents.nodes import anchored

    series = _passage("a", "Animorphs", "Animorphs is a science fantasy series for young adults.")
    companion = _passage("b", "The Hork-Bajir Chronicles", "A companion book to Animorphs.")
    award = _passage(
        "c",
        "Andre Norton Award",
        "The Andre Norton Award recognizes young adult science fiction and fantasy books.",
    )
    evidence = [series, companion, award]
    for n, p in enumerate(evidence, start=1):
        p.number = n
        p.sentences = [p.hit.text]
    question = "What science fantasy young adult series has companion books?"
    # Copied from the award's page: grounded, but not in the passage the question leads to.
    assert not anchored("The Andre Norton Award recognizes young adult books [3].", evidence, question)
    assert anchored("Animorphs [1].", evidence, question)
    # A passage the question itself names anchors an answer too.
    assert anchored("It is an award for books [3].", evidence, question + " Andre Norton Award?")
    assert not anchored("Animorphs.", [], question)


def test_a_model_answer_cites_the_pages_of_what_it_names() -> None:
    from ragd.agents.nodes import attach_citations

    evidence = {
        1: "Bobbi Bacha. Bobbi Bacha is portrayed in Suburban Madness by actress Sela Ward.",
        2: "Indriati Iskak. Indriati Iskak is an Indonesian actress.",
        3: "Sela Ward. Sela Ann Ward (born July 11, 1956) is an American actress.",
    }
    titles = {1: "Bobbi Bacha", 2: "Indriati Iskak", 3: "Sela Ward"}
    question = "What is the middle name of the actress who plays Bobbi Bacha?"
    text, cited = attach_citations("The actress is Sela Ward [1].", evidence, question, titles=titles)
    # The answer names Sela Ward: her page backs it too; the page it does not name does not.
    assert cited == [1, 3] and text == "The actress is Sela Ward [1][3]."


def test_a_model_marker_on_a_passage_without_the_answer_words_is_dropped() -> None:
    from ragd.agents.nodes import attach_citations

    evidence = {
        1: "François Coli. François Coli flew with Charles Nungesser.",
        2: "L'Oiseau Blanc. L'Oiseau Blanc was flown by Charles Nungesser and François Coli.",
        3: "Levasseur PL.8. The Levasseur PL.8 was a French biplane.",
    }
    question = "Which French ace pilot flew L'Oiseau Blanc?"
    text, cited = attach_citations("Charles Nungesser [1][2][3].", evidence, question)
    assert cited == [1, 2] and text == "Charles Nungesser [1][2]."


def test_an_initial_does_not_end_a_sentence() -> None:
    from ragd.agents.nodes import _first_sentence

    text = "Henry J. Kaiser founded Kaiser Ventures. He built ships in 1942. A. Smith came later."
    assert split_sentences(text) == [
        "Henry J. Kaiser founded Kaiser Ventures.",
        "He built ships in 1942.",
        "A. Smith came later.",
    ]
    # The model's "Henry J. Kaiser." used to reach the reader as "Henry J".
    assert _first_sentence("Henry J. Kaiser. He was born in 1882.") == "Henry J. Kaiser."
