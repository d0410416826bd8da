"""Embedder, BM25 encoder and Qdrant index on the real MiniLM and Qdrant local mode."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from ragd.config import Settings
from ragd.errors import BadRequest, ConfigError
from ragd.retrieval.base import ChunkRecord, Embedder, SearchFilter, SparseEncoder
from ragd.retrieval.bm25_encoder import BM25Encoder, analyze, term_id
from ragd.retrieval.qdrant_index import DENSE, SPARSE, QdrantIndex, collection_name
from ragd.retrieval.registry import build_embedder, build_index, build_sparse_encoder
from tests.conftest import make_settings

DOCS = [
    ("d0", "The cat sat on the mat.", ["*"]),
    ("d1", "Dogs are loyal animals; cats are independent animals.", ["*"]),
    ("d2", "Quantum computers use qubits and entanglement.", ["group:physics"]),
    ("d3", "The cat's whiskers twitched while cats slept.", ["*"]),
    ("d4", "Vitamin D supplements and bone density in older adults.", ["user:alice"]),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("retrieval"))


@pytest.fixture(scope="module")
def embedder(settings: Settings) -> Embedder:
    return build_embedder(settings)


def _records(
    embedder: Embedder, sparse: SparseEncoder, tenant: str = "t1", coll: str = "c1"
) -> list[ChunkRecord]:
    texts = [d[1] for d in DOCS]
    dense = embedder.embed_documents(texts)
    return [
        ChunkRecord(
            point_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{coll}/{doc}/1/0")),
            dense=dense[i],
            sparse=sv,
            payload={
                "tenant": tenant,
                "collection_id": coll,
                "document_id": doc,
                "version": 1,
                "chunk_index": 0,
                "text": text,
                "acl": acl,
                "source": f"{doc}.md",
                "created_at": 1000.0 + i,
                "metadata": {"lang": "en", "n": i},
            },
        )
        for i, ((doc, text, acl), sv) in enumerate(zip(DOCS, sparse.encode_documents(texts), strict=True))
    ]


@pytest.fixture
def index(settings: Settings, embedder: Embedder) -> QdrantIndex:
    client = QdrantClient(location=":memory:")
    idx = build_index(settings, client, embedder)
    sparse = build_sparse_encoder(settings)
    idx.upsert(_records(embedder, sparse))
    idx.upsert(_records(embedder, sparse, tenant="t2"))
    return idx


def test_embedder_is_normalised_batched_and_cached(settings: Settings, embedder: Embedder) -> None:
    vecs = embedder.embed_documents(["a cat", "a dog", "quantum"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedder.embed_query("a cat"), vecs[0], atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, 384)
    assert embedder.count_tokens("tokenization") >= 2  # word pieces, not words
    assert build_embedder(settings) is embedder
    assert embedder.name == "all-MiniLM-L6-v2"


def test_embedder_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RAGD_EMBEDDING__MODEL"):
        build_embedder(make_settings(tmp_path, embedding={"model": "no-such-model"}))
    with pytest.raises(ConfigError, match="RAGD_EMBEDDING__MODEL"):
        build_embedder(make_settings(tmp_path, embedding={"model": str(tmp_path)}))


def test_bm25_analysis_and_stable_ids() -> None:
    assert analyze("The Cat's running CATS, and runners!") == ["cat", "run", "cat", "runner"]
    assert term_id("cat") == term_id("cat") == 2**32 - 1 & term_id("cat")
    enc = BM25Encoder()
    q = enc.encode_query("cats cat CAT the")
    assert q.indices == [term_id("cat")] and q.values == [1.0]
    assert enc.encode_query("the and of").indices == []
    with pytest.raises(ValueError):
        BM25Encoder(b=2)


def test_sparse_scores_are_exact_bm25_with_qdrant_idf(index: QdrantIndex) -> None:
    """Qdrant's IDF modifier (local mode) times our TF part equals textbook BM25."""
    enc = BM25Encoder()
    query = "cats animals"
    flt = SearchFilter(tenant="t1", collection_ids=["c1"], subjects=["group:physics", "user:alice"])
    hits = index.query(flt, mode="sparse", limit=10, sparse=enc.encode_query(query))
    # IDF is collection-wide: both tenants' copies count (N = 10).
    corpus = [analyze(t) for _, t, _ in DOCS] * 2
    n = len(corpus)
    expected = {}
    for (doc, _text, _), terms in zip(DOCS, corpus, strict=False):
        score = 0.0
        for term in set(analyze(query)):
            tf = terms.count(term)
            df = sum(term in c for c in corpus)
            if tf:
                idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
                norm = enc.k1 * (1 - enc.b + enc.b * len(terms) / enc.avg_len)
                score += idf * tf * (enc.k1 + 1) / (tf + norm)
        if score:
            expected[doc] = score
    assert {h.document_id: round(h.score, 5) for h in hits} == {k: round(v, 5) for k, v in expected.items()}


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_filters_and_acl_are_inside_the_query(index: QdrantIndex, embedder: Embedder, mode: str) -> None:
    enc = BM25Encoder()
    q = "vitamin D bone density quantum qubits cats"
    vecs = {"dense": embedder.embed_query(q), "sparse": enc.encode_query(q)}

    def ids(flt: SearchFilter) -> set[str]:
        hits = index.query(flt, mode=mode, limit=10, **vecs)  # type: ignore[arg-type]
        assert all(h.payload["tenant"] == flt.tenant for h in hits)
        return {h.document_id for h in hits}

    everyone = ids(SearchFilter(tenant="t1", collection_ids=["c1"]))
    assert "d2" not in everyone and "d4" not in everyone  # ACL-restricted documents
    assert "d4" in ids(SearchFilter(tenant="t1", collection_ids=["c1"], subjects=["user:alice"]))
    assert ids(SearchFilter(tenant="t1", collection_ids=["other"])) == set()
    assert ids(SearchFilter(tenant="t3", collection_ids=["c1"])) == set()
    assert ids(SearchFilter(tenant="t1", collection_ids=["c1"], document_ids=["d3"])) <= {"d3"}
    assert ids(SearchFilter(tenant="t1", collection_ids=["c1"], sources=["d0.md"])) <= {"d0"}
    assert ids(SearchFilter(tenant="t1", collection_ids=["c1"], created_after=1002.5)) <= {"d3"}
    assert ids(SearchFilter(tenant="t1", collection_ids=["c1"], metadata={"n": [0, 1]})) <= {"d0", "d1"}
    assert ids(SearchFilter(tenant="t1", collection_ids=["c1"], metadata={"lang": "fr"})) == set()


def test_bad_filters_are_client_errors(index: QdrantIndex) -> None:
    with pytest.raises(BadRequest):
        index.count(SearchFilter(tenant="t1", collection_ids=[]))
    with pytest.raises(BadRequest):
        index.count(SearchFilter(tenant="t1", collection_ids=["c1"], metadata={"a.b": 1}))
    with pytest.raises(BadRequest):
        index.count(SearchFilter(tenant="t1", collection_ids=["c1"], metadata={"a": {"$gt": 1}}))


def test_deletes_and_counts(index: QdrantIndex, embedder: Embedder) -> None:
    all_t1 = SearchFilter(tenant="t1", collection_ids=["c1"], subjects=["group:physics", "user:alice"])
    assert index.count() == 10 and index.count(all_t1) == 5
    index.delete_document_version("t1", "d0", 2)  # no such version: nothing happens
    assert index.count(all_t1) == 5
    index.delete_document_version("t1", "d0", 1)
    assert index.count(all_t1) == 4
    rec = _records(embedder, BM25Encoder())[1]
    index.upsert([ChunkRecord(str(uuid.uuid4()), rec.dense, rec.sparse, {**rec.payload, "version": 2})])
    index.retire_other_versions("t1", "d1", keep_version=2)
    hits = index.query(all_t1, mode="sparse", limit=10, sparse=BM25Encoder().encode_query("dogs"))
    assert [(h.document_id, h.version) for h in hits] == [("d1", 2)]
    index.delete_document("t1", "d1")
    index.delete_collection_points("t1", "c1")
    assert index.count(all_t1) == 0 and index.count() == 5  # the other tenant is untouched


def test_collection_layout(settings: Settings, embedder: Embedder) -> None:
    assert collection_name("ragd_", "all-MiniLM-L6-v2") == "ragd_chunks__all_minilm_l6_v2"
    assert collection_name("ragd_", "scifact-minilm@2") == "ragd_chunks__scifact_minilm_2"
    client = QdrantClient(location=":memory:")
    idx = build_index(settings, client, embedder)
    assert idx.count() == 0
    assert idx.query(SearchFilter("t", ["c"]), mode="dense", limit=3, dense=[0.0] * 384) == []
    idx.ensure_collection()
    idx.ensure_collection()  # idempotent
    wrong = QdrantIndex(client, idx.name, 128)
    with pytest.raises(Exception, match="dense size"):
        wrong.ensure_collection()


def test_reembed_copies_one_collection_with_new_vectors(settings: Settings, embedder: Embedder) -> None:
    from ragd.retrieval.reembed import reembed_collection

    client = QdrantClient(location=":memory:")
    source = QdrantIndex(client, "ragd_chunks__old", embedder.dim)
    target = QdrantIndex(client, "ragd_chunks__new", embedder.dim)
    sparse = BM25Encoder()
    source.upsert(_records(embedder, sparse) + _records(embedder, sparse, coll="c2"))
    assert reembed_collection(source, target, embedder, "t1", "c1", batch=2) == len(DOCS)
    subjects = ["group:physics", "user:alice"]
    everyone = SearchFilter(tenant="t1", collection_ids=["c1", "c2"], subjects=subjects)
    assert target.count(everyone) == len(DOCS) and target.count() == len(DOCS)
    hits = target.query(everyone, mode="sparse", limit=3, sparse=sparse.encode_query("qubits"))
    assert [h.document_id for h in hits] == ["d2"] and hits[0].payload["acl"] == ["group:physics"]
    dense = target.query(everyone, mode="dense", limit=1, dense=embedder.embed_query(DOCS[4][1]))
    assert dense[0].document_id == "d4" and dense[0].score > 0.99
    assert reembed_collection(target, source, embedder, "t9", "none") == 0


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid-rrf", "hybrid-dbsf"])
def test_local_mirror_answers_like_qdrant(settings: Settings, embedder: Embedder, mode: str) -> None:
    """The vectorised local-mode path returns Qdrant's own ranking and scores."""
    from ragd.retrieval.qdrant_index import HybridParams

    client = QdrantClient(location=":memory:")
    fast = QdrantIndex(client, "ragd_chunks__x", embedder.dim)
    plain = QdrantIndex(client, "ragd_chunks__x", embedder.dim, accelerate_local=False)
    assert fast._mirror is not None and plain._mirror is None
    enc = BM25Encoder()
    fast.upsert(_records(embedder, enc) + _records(embedder, enc, tenant="t2"))
    hp = HybridParams(fusion="dbsf" if mode.endswith("dbsf") else "rrf", rrf_k=10, dense_weight=1.5)
    m = "hybrid" if mode.startswith("hybrid") else mode
    for q, subjects, extra in [
        ("cats and dogs", (), {}),
        ("quantum vitamin cats", ("group:physics", "user:alice"), {}),
        ("cats", ("user:alice",), {"metadata": {"n": [0, 3, 4]}}),
        ("animals", (), {"created_after": 1000.5, "sources": ["d1.md", "d3.md"]}),
    ]:
        flt = SearchFilter(tenant="t1", collection_ids=["c1"], subjects=subjects, **extra)  # type: ignore[arg-type]
        args = {
            "mode": m,
            "limit": 4,
            "dense": embedder.embed_query(q),
            "sparse": enc.encode_query(q),
            "hybrid": hp,
        }
        got = [(h.point_id, round(h.score, 4)) for h in fast.query(flt, **args)]  # type: ignore[arg-type]
        want = [(h.point_id, round(h.score, 4)) for h in plain.query(flt, **args)]  # type: ignore[arg-type]
        assert got == want, (q, got, want)
    # A write that bypasses QdrantIndex (e.g. ingestion's batch publish) is seen at once.
    from qdrant_client.http import models as qm

    everyone = SearchFilter(tenant="t1", collection_ids=["c1"])
    assert any(
        h.document_id == "d0"
        for h in fast.query(everyone, mode="sparse", limit=5, sparse=enc.encode_query("cat"))
    )
    client.delete(
        "ragd_chunks__x",
        points_selector=qm.FilterSelector(
            filter=qm.Filter(must=[qm.FieldCondition(key="document_id", match=qm.MatchValue(value="d0"))])
        ),
    )
    assert all(
        h.document_id != "d0"
        for h in fast.query(everyone, mode="sparse", limit=5, sparse=enc.encode_query("cat"))
    )


def _chunk_records(
    embedder: Embedder,
    enc: SparseEncoder,
    texts: list[str],
    key: Callable[[int], str],
    payload: Callable[[int, str], dict[str, Any]],
) -> list[ChunkRecord]:
    """One record per text, embedded and encoded, with a uuid5 id from ``key(i)``."""
    return [
        ChunkRecord(
            point_id=str(uuid.uuid5(uuid.NAMESPACE_URL, key(i))),
            dense=v,
            sparse=sv,
            payload=payload(i, text),
        )
        for i, (text, v, sv) in enumerate(
            zip(texts, embedder.embed_documents(texts), enc.encode_documents(texts), strict=True)
        )
    ]


def _same_answers(fast: QdrantIndex, plain: QdrantIndex, embedder: Embedder, enc: BM25Encoder) -> None:
    """The mirror and Qdrant itself rank and score alike, in every mode, under a few filters."""
    from ragd.retrieval.qdrant_index import HybridParams

    for q, subjects in [
        ("cats and dogs animals", ()),
        ("quantum vitamin cats", ("group:physics", "user:alice")),
    ]:
        flt = SearchFilter(tenant="t1", collection_ids=["c1", "c2"], subjects=subjects)
        for mode, fusion in [("dense", "rrf"), ("sparse", "rrf"), ("hybrid", "rrf"), ("hybrid", "dbsf")]:
            args: dict[str, Any] = {
                "mode": mode,
                "limit": 6,
                "dense": embedder.embed_query(q),
                "sparse": enc.encode_query(q),
                "hybrid": HybridParams(fusion=fusion),  # type: ignore[arg-type]
            }
            got = [(h.point_id, round(h.score, 4)) for h in fast.query(flt, **args)]
            want = [(h.point_id, round(h.score, 4)) for h in plain.query(flt, **args)]
            # Equal scores may come in any order (Qdrant's own order for ties is its sort's), and
            # the tie that straddles the limit may keep different points.
            assert [sc for _, sc in got] == [sc for _, sc in want], (q, mode, fusion, got, want)
            last = want[-1][1] if want else None
            for score in {sc for _, sc in want} - {last}:
                assert {i for i, sc in got if sc == score} == {i for i, sc in want if sc == score}, (q, mode)


def test_local_mirror_follows_writes_without_rereading_the_collection(embedder: Embedder) -> None:
    """Each kind of write is applied to the mirror by re-reading only the points it touched."""
    from qdrant_client.http import models as qm

    client = QdrantClient(location=":memory:")
    fast = QdrantIndex(client, "ragd_chunks__x", embedder.dim)
    plain = QdrantIndex(client, "ragd_chunks__x", embedder.dim, accelerate_local=False)
    assert fast._mirror is not None
    stats = fast._mirror.stats
    enc = BM25Encoder()
    name = "ragd_chunks__x"
    fast.upsert(_records(embedder, enc) + _records(embedder, enc, tenant="t2"))
    _same_answers(fast, plain, embedder, enc)
    assert stats.full_builds == 1

    def doc(document_id: str, tenant: str = "t1") -> list[qm.Condition]:
        return [
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=tenant)),
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=document_id)),
        ]

    # Ingestion's pattern: version 2 upserted unpublished, then published and version 1 retired.
    revised = [f"{text} Revised." for _, text, _ in DOCS[:2]]  # distinct vectors: no score ties
    v2 = _chunk_records(
        embedder,
        enc,
        revised,
        key=lambda i: f"v2/d{i}",
        payload=lambda i, text: {
            "tenant": "t1",
            "collection_id": "c1",
            "document_id": f"d{i}",
            "version": 2,
            "acl": [],
            "text": text,
            "source": f"d{i}.md",
            "created_at": 2000.0,
            "metadata": {},
        },
    )
    fast.upsert(v2)
    _same_answers(fast, plain, embedder, enc)
    client.batch_update_points(
        name,
        update_operations=[
            qm.SetPayloadOperation(
                set_payload=qm.SetPayload(payload={"acl": ["*"]}, points=[r.point_id.upper() for r in v2])
            ),
            qm.DeleteOperation(
                delete=qm.FilterSelector(
                    filter=qm.Filter(
                        must=doc("d0"),
                        must_not=[qm.FieldCondition(key="version", match=qm.MatchValue(value=2))],
                    )
                )
            ),
        ],
    )
    _same_answers(fast, plain, embedder, enc)
    # Payload writes by filter and by id, vector writes, deletes by id.
    client.set_payload(name, payload={"collection_id": "c2"}, points=qm.Filter(must=doc("d3")))
    _same_answers(fast, plain, embedder, enc)
    d4 = fast.query(
        SearchFilter(tenant="t1", collection_ids=["c1"], subjects=("user:alice",)),
        mode="dense",
        limit=1,
        dense=embedder.embed_query(DOCS[4][1]),
    )[0]
    client.overwrite_payload(name, payload={**d4.payload, "acl": ["*"], "tenant": "t1"}, points=[d4.point_id])
    _same_answers(fast, plain, embedder, enc)
    client.update_vectors(
        name, points=[qm.PointVectors(id=v2[1].point_id, vector={DENSE: embedder.embed_query("qubits")})]
    )
    _same_answers(fast, plain, embedder, enc)
    client.delete_vectors(name, vectors=[SPARSE], points=[v2[0].point_id])
    _same_answers(fast, plain, embedder, enc)
    client.delete_payload(name, keys=["acl"], points=qm.FilterSelector(filter=qm.Filter(must=doc("d1"))))
    client.delete(name, points_selector=qm.PointIdsList(points=[d4.point_id]))
    _same_answers(fast, plain, embedder, enc)
    assert stats.full_builds == 1 and stats.refreshes == 7  # one per query after writes
    # Writes that build on each other before any query: a filtered delete must still find the
    # point whose payload an earlier, not yet applied, write changed.
    moved = v2[1].point_id
    client.set_payload(name, payload={"document_id": "d8"}, points=[moved])
    client.delete(name, points_selector=qm.FilterSelector(filter=qm.Filter(must=doc("d8"))))
    _same_answers(fast, plain, embedder, enc)
    assert client.retrieve(name, [moved]) == [] and stats.full_builds == 1

    # Many new points: the overlay is folded into the base from memory, still without a scroll.
    # Every text that shares a query term has its own length, so no two BM25 scores tie.
    texts = [
        f"cats {' '.join(f'w{i}x{j}' for j in range(i // 3))}" if i % 3 == 0 else f"note {i} on topic{i}"
        for i in range(600)
    ]
    bulk = _chunk_records(
        embedder,
        enc,
        texts,
        key=lambda i: f"bulk/{i}",
        payload=lambda i, _: {
            "tenant": "t1",
            "collection_id": "c2",
            "document_id": f"b{i}",
            "version": 1,
            "acl": ["*"],
        },
    )
    for start in range(0, 600, 100):
        fast.upsert(bulk[start : start + 100])
        _same_answers(fast, plain, embedder, enc)
    assert stats.compactions >= 1 and stats.full_builds == 1
    # A write the mirror cannot itemise (a generator of points) makes it read everything again.
    client.upload_points(
        name, points=(p for p in [qm.PointStruct(id=bulk[0].point_id, vector={}, payload={})])
    )
    _same_answers(fast, plain, embedder, enc)
    assert stats.full_builds == 2


def test_write_descriptions() -> None:
    """Which points a write may touch, as the client wrapper reads it from the call's arguments."""
    from qdrant_client.http import models as qm

    from ragd.retrieval.local_search import describe_write, point_key

    u = uuid.uuid4()
    assert point_key(str(u).upper()) == point_key(u) == str(u) and point_key(7) == "7"
    (c,) = describe_write(
        "upsert", {"collection_name": "c", "points": qm.Batch(ids=[1, 2], vectors=[[0.0], [1.0]])}
    )
    assert c.ids == ("1", "2") and not c.full
    flt = qm.Filter(must=[qm.FieldCondition(key="tenant", match=qm.MatchValue(value="t"))])
    (c,) = describe_write(
        "delete", {"collection_name": "c", "points_selector": qm.FilterSelector(filter=flt)}
    )
    assert c.filters == (flt,) and not c.ids
    assert describe_write("upsert", {"collection_name": "c", "points": iter([])})[0].full
    assert describe_write("recreate_collection", {"collection_name": "c"})[0].full
    assert describe_write("delete", {"points_selector": [1]})[0].full  # no collection: every mirror
    ops = [
        qm.ClearPayloadOperation(clear_payload=qm.PointIdsList(points=[u])),
        qm.DeletePayloadOperation(delete_payload=qm.DeletePayload(keys=["a"])),
    ]
    a, b = describe_write("batch_update_points", {"collection_name": "c", "update_operations": ops})
    assert a.ids == (str(u),) and b.full


def test_local_mirror_follows_writes_to_integer_point_ids(embedder: Embedder) -> None:
    """Points written with integer ids (by another client of the collection) are re-read by id too."""
    from qdrant_client.http import models as qm

    client = QdrantClient(location=":memory:")
    fast = QdrantIndex(client, "ragd_chunks__x", embedder.dim)
    plain = QdrantIndex(client, "ragd_chunks__x", embedder.dim, accelerate_local=False)
    enc = BM25Encoder()
    fast.upsert(_records(embedder, enc))
    _same_answers(fast, plain, embedder, enc)
    texts = ["Cats and dogs share a house.", "Quantum cats in boxes."]
    vectors, sparse = embedder.embed_documents(texts), enc.encode_documents(texts)
    payload = {"tenant": "t1", "collection_id": "c1", "document_id": "int", "version": 1, "acl": ["*"]}
    client.upsert(
        "ragd_chunks__x",
        points=[
            qm.PointStruct(
                id=i + 1,
                vector={
                    DENSE: list(map(float, v)),
                    SPARSE: qm.SparseVector(indices=s.indices, values=s.values),
                },
                payload=payload,
            )
            for i, (v, s) in enumerate(zip(vectors, sparse, strict=True))
        ],
    )
    _same_answers(fast, plain, embedder, enc)
    client.set_payload("ragd_chunks__x", payload={"acl": ["user:nobody"]}, points=[1])
    _same_answers(fast, plain, embedder, enc)
    assert fast._mirror is not None and fast._mirror.stats.full_builds == 1
