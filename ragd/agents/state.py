"""What the agent carries between steps (graph state) and what a run may use (run context)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

from ragd.llm_serving.base import ChatModel, Message
from ragd.retrieval.base import Embedder, SearchHit

ABSTAIN_ANSWER = "I could not find this in the knowledge base."


@dataclass(frozen=True)
class DocumentView:
    """A document's metadata and a window of its chunks (what ``get_document`` returns)."""

    document_id: str
    version: int
    title: str
    metadata: dict[str, Any]
    chunks: list[SearchHit]


@runtime_checkable
class KnowledgeBase(Protocol):
    """Search over exactly the collections one caller may read (bound when a run starts).

    The caller's tenant, readable collections and grant subjects are fixed by whoever builds the
    object, so nothing the agent (or a model-chosen tool argument) does can widen them.
    """

    async def search(self, query: str, *, top_k: int) -> list[SearchHit]:
        """Hybrid search, best first."""
        ...

    async def document(self, document_id: str, *, chunk_index: int | None, window: int) -> DocumentView:
        """Metadata of a readable document and the chunks around ``chunk_index``."""
        ...


@dataclass
class Passage:
    """A retrieved chunk as the agent uses it: numbered once it becomes evidence."""

    hit: SearchHit
    title: str
    score: float  # the agent's own relevance score (fused over queries)
    sentences: list[str] = field(default_factory=list)  # evidence sentences shown to the model
    queries: list[str] = field(default_factory=list)  # which searches found it
    via: list[str] = field(default_factory=list)  # passages that led to it (bridge / compared entity)
    number: int = 0  # [n] in the prompt and the answer

    @property
    def key(self) -> str:
        return self.hit.point_id

    @property
    def body(self) -> str:
        """The chunk's text without the heading it opens with (its own title): a link test on
        the whole text would find "Lempster, New Hampshire" inside "East Lempster, New Hampshire"."""
        text = self.hit.text.lstrip().lstrip("#").lstrip()
        return text[len(self.title) :].lstrip() if self.title and text.startswith(self.title) else text

    @property
    def evidence_text(self) -> str:
        return " ".join(self.sentences) if self.sentences else self.hit.text

    def citation(self) -> dict[str, Any]:
        """The citation as the APIs return it."""
        return {
            "number": self.number,
            "document_id": self.hit.document_id,
            "title": self.title,
            "version": self.hit.version,
            "chunk_index": self.hit.chunk_index,
            "collection_id": self.hit.collection_id,
            "page": self.hit.page,
            "section": self.hit.section,
            "source": self.hit.source,
            "score": round(float(self.score), 4),
            "text": self.hit.text,
            "quote": self.evidence_text,
        }


class AgentState(TypedDict, total=False):
    """The LangGraph state of one turn."""

    question: str
    history: list[Message]
    route: str  # "knowledge" | "tool" | "chitchat"
    tool_calls: list[dict[str, Any]]  # every tool call: name, arguments, result or error
    queries: list[str]
    passages: list[Passage]  # candidates, best first
    evidence: list[Passage]  # numbered passages shown to the model
    answer: str
    cited: list[int]  # passage numbers the answer cites
    supported: bool
    support_detail: list[dict[str, Any]]
    abstained: bool
    extractive: bool  # answered from evidence sentences, not by the model (see ``answer_kind``)
    answer_kind: str  # "model" | "extractive" (model unsupported) | "extractive_fallback" (model down)
    attempts: int  # answer attempts so far
    retried: bool  # retrieval was retried (wider) after finding no evidence
    steps: int
    backend: str
    usage: dict[str, int]
    events: list[str]  # the path taken, for traces and tests
    timings: list[tuple[str, float]]  # (node, milliseconds) in order


TokenSink = Callable[[str], Awaitable[None]]
#: The retrieved-context guard: passages in, the passages the model may see out (instruction
#: sentences neutralised, or quarantined chunks left out), by the collection's guard policy.
ContextScreen = Callable[[list[Passage]], Awaitable[list[Passage]]]


@dataclass
class AgentContext:
    """Run-scoped dependencies (LangGraph runtime context): never globals."""

    knowledge: KnowledgeBase
    llm: ChatModel
    embedder: Embedder | None
    tools: Sequence[Any]  # langchain BaseTool objects: built-ins plus operators' plugins
    max_steps: int = 8
    deadline_s: float = 20.0
    top_k: int = 8
    evidence_passages: int = 4
    evidence_sentences: int = 2
    max_answer_tokens: int = 48
    planner: str = "rules"  # "rules" | "model"
    on_token: TokenSink | None = None  # streaming: called with each answer token
    on_reset: Callable[[], Awaitable[None]] | None = None  # streaming: a drafted answer was dropped
    screen: ContextScreen | None = None  # context guard; None: drop chunks ingestion flagged
    started: float = field(default_factory=time.monotonic)
    #: Embeddings the turn has computed, by text (see evidence.SentenceScorer).
    sentence_vectors: dict[str, Any] = field(default_factory=dict)

    def time_left(self) -> float:
        return self.deadline_s - (time.monotonic() - self.started)
