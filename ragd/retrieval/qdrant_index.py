"""ragd's chunks in Qdrant: collection layout, writes, deletes, counts and filtered queries.

Layout: **one Qdrant collection per deployment and embedder**, named
``<qdrant.collection_prefix>chunks__<embedder slug>`` (e.g. ``ragd_chunks__all_minilm_l6_v2``).
Every ragd collection of every tenant whose documents are embedded with that embedder lives in it,
told apart by the payload (``tenant``, ``collection_id``, ``document_id``, ``version``, ``acl``; see
:mod:`ragd.retrieval.base`), and every query carries those restrictions inside its Qdrant filter.
Why not one Qdrant collection per ragd collection: Qdrant's guidance for many small tenants is
one collection with a tenant-keyed payload index (thousands of collections each cost memory and
file handles), a search over several ragd collections stays one query, and switching a ragd
collection to another embedder (a fine-tuned checkpoint) means re-embedding its documents into
that embedder's collection, never mixing two vector spaces in one. BM25 IDF statistics are
therefore collection-wide over all tenants of an embedder (term weights only; no text or ids).

Each point has a named dense vector ``dense`` (cosine) and a named sparse vector ``bm25`` with
``Modifier.IDF`` (see :mod:`ragd.retrieval.bm25_encoder`). Shard number and replication factor
come from settings and matter only on a server/cluster; payload indexes (``tenant`` marked as
the tenant key) are created for the server, local mode ignores them (its search is exhaustive).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ragd.errors import BadRequest, IndexUnavailable
from ragd.retrieval.base import ChunkRecord, SearchFilter, SearchHit, SearchMode, SparseVector
from ragd.retrieval.local_search import LocalMirror, is_local

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

DENSE = "dense"
SPARSE = "bm25"
Fusion = Literal["rrf", "dbsf"]
_FIELD = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_KEYWORD_FIELDS = ("collection_id", "document_id", "acl", "source")


def collection_name(prefix: str, embedder_name: str) -> str:
    """The Qdrant collection that holds chunks embedded by ``embedder_name``."""
    slug = re.sub(r"[^a-z0-9]+", "_", embedder_name.lower()).strip("_")[:80] or "default"
    return f"{prefix}chunks__{slug}"


@dataclass(frozen=True)
class HybridParams:
    """How hybrid search fuses its dense and sparse candidate lists."""

    fusion: Fusion = "rrf"
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    prefetch_limit: int = 100


def _scalar_match(key: str, value: Any) -> qm.FieldCondition:
    from qdrant_client.http import models as qm

    if isinstance(value, list):
        if not value or len(value) > 256 or not all(isinstance(v, str | int) for v in value):
            raise BadRequest(f"filter {key!r}: a list must hold 1-256 strings or integers")
        return qm.FieldCondition(key=key, match=qm.MatchAny(any=value))
    if isinstance(value, bool | int | str):
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))
    raise BadRequest(f"filter {key!r}: values must be strings, integers, booleans or lists of them")


def build_filter(flt: SearchFilter) -> qm.Filter:
    """The Qdrant filter for ``flt``: tenant, readable collections and ACL always included."""
    from qdrant_client.http import models as qm

    if not flt.tenant or not flt.collection_ids:
        raise BadRequest("a search needs a tenant and at least one readable collection")
    must: list[qm.Condition] = [
        qm.FieldCondition(key="tenant", match=qm.MatchValue(value=flt.tenant)),
        qm.FieldCondition(key="collection_id", match=qm.MatchAny(any=list(flt.collection_ids))),
        # Document-level ACL: "*" (anyone who may read the collection) or one of the caller's subjects.
        qm.FieldCondition(key="acl", match=qm.MatchAny(any=["*", *flt.subjects])),
    ]
    if flt.document_ids is not None:
        must.append(qm.FieldCondition(key="document_id", match=qm.MatchAny(any=list(flt.document_ids))))
    if flt.sources is not None:
        must.append(qm.FieldCondition(key="source", match=qm.MatchAny(any=list(flt.sources))))
    if flt.created_after is not None or flt.created_before is not None:
        must.append(
            qm.FieldCondition(key="created_at", range=qm.Range(gte=flt.created_after, lte=flt.created_before))
        )
    for key, value in flt.metadata.items():
        if not _FIELD.match(key):
            raise BadRequest("metadata filter keys are 1-64 letters, digits, '_' or '-'")
        must.append(_scalar_match(f"metadata.{key}", value))
    return qm.Filter(must=must)


def _hit(point: Any) -> SearchHit:
    p = dict(point.payload or {})
    page = p.get("page")
    return SearchHit(
        point_id=str(point.id),
        score=float(point.score),
        text=str(p.get("text", "")),
        document_id=str(p.get("document_id", "")),
        version=int(p.get("version", 0)),
        chunk_index=int(p.get("chunk_index", 0)),
        collection_id=str(p.get("collection_id", "")),
        section=p.get("section") or None,
        page=int(page) if isinstance(page, int | float) else None,
        source=p.get("source") or None,
        payload=p,
    )


class QdrantIndex:
    """One Qdrant collection of ragd chunks for one embedder (see the module docstring)."""

    def __init__(
        self,
        client: QdrantClient,
        name: str,
        dim: int,
        *,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        accelerate_local: bool = True,
    ) -> None:
        self.client = client
        self.name = name
        self.dim = dim
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self._ready = False
        self._mirror: LocalMirror | None = None
        if accelerate_local and is_local(client):
            self._mirror = LocalMirror(client, name, DENSE, SPARSE)

    # --- lifecycle ---------------------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection and its payload indexes unless they exist (idempotent)."""
        if self._ready:
            return
        from qdrant_client.http import models as qm

        try:
            if not self.client.collection_exists(self.name):
                self.client.create_collection(
                    self.name,
                    vectors_config={DENSE: qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                    shard_number=self.shard_number,
                    replication_factor=self.replication_factor,
                )
                self._create_payload_indexes()
            else:
                self._check_dim()
        except (BadRequest, IndexUnavailable):
            raise
        except Exception as exc:
            raise IndexUnavailable(f"could not prepare vector collection {self.name}") from exc
        self._ready = True

    def _check_dim(self) -> None:
        info = self.client.get_collection(self.name)
        vectors = info.config.params.vectors
        size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if size != self.dim:
            raise IndexUnavailable(
                f"vector collection {self.name} has dense size {size}, the embedder gives {self.dim}"
            )

    def _create_payload_indexes(self) -> None:
        from qdrant_client.http import models as qm

        if is_local(self.client):
            return  # local mode ignores payload indexes (and warns about each)
        self.client.create_payload_index(
            self.name,
            "tenant",
            field_schema=qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
        )
        for field in _KEYWORD_FIELDS:
            self.client.create_payload_index(self.name, field, field_schema=qm.PayloadSchemaType.KEYWORD)
        self.client.create_payload_index(self.name, "version", field_schema=qm.PayloadSchemaType.INTEGER)
        self.client.create_payload_index(self.name, "created_at", field_schema=qm.PayloadSchemaType.FLOAT)

    # --- writes ------------------------------------------------------------------------------

    def upsert(self, records: Sequence[ChunkRecord], batch_size: int = 256) -> int:
        """Write ``records`` (idempotent: point ids are deterministic); returns how many."""
        from qdrant_client.http import models as qm

        self.ensure_collection()
        for start in range(0, len(records), batch_size):
            points = []
            for rec in records[start : start + batch_size]:
                vector: dict[str, Any] = {DENSE: [float(x) for x in rec.dense]}
                if rec.sparse.indices:  # an empty sparse vector is simply absent
                    vector[SPARSE] = qm.SparseVector(indices=rec.sparse.indices, values=rec.sparse.values)
                points.append(qm.PointStruct(id=rec.point_id, vector=vector, payload=rec.payload))
            try:
                self.client.upsert(self.name, points=points, wait=True)
            except Exception as exc:
                raise IndexUnavailable(f"could not write to vector collection {self.name}") from exc
        return len(records)

    def _delete(self, conditions: list[qm.Condition]) -> None:
        from qdrant_client.http import models as qm

        if not self.client.collection_exists(self.name):
            return
        try:
            self.client.delete(
                self.name, points_selector=qm.FilterSelector(filter=qm.Filter(must=conditions)), wait=True
            )
        except Exception as exc:
            raise IndexUnavailable(f"vector collection {self.name} refused a delete") from exc

    @staticmethod
    def _doc_conditions(tenant: str, document_id: str) -> list[qm.Condition]:
        from qdrant_client.http import models as qm

        return [
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=tenant)),
            qm.FieldCondition(key="document_id", match=qm.MatchValue(value=document_id)),
        ]

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Delete every point of a document (all versions)."""
        self._delete(self._doc_conditions(tenant, document_id))

    def delete_document_version(self, tenant: str, document_id: str, version: int) -> None:
        """Delete the points of one version of a document."""
        from qdrant_client.http import models as qm

        conds = self._doc_conditions(tenant, document_id)
        conds.append(qm.FieldCondition(key="version", match=qm.MatchValue(value=version)))
        self._delete(conds)

    def retire_other_versions(self, tenant: str, document_id: str, keep_version: int) -> None:
        """Delete the points of every version of a document except ``keep_version``."""
        from qdrant_client.http import models as qm

        if not self.client.collection_exists(self.name):
            return
        flt = qm.Filter(
            must=self._doc_conditions(tenant, document_id),
            must_not=[qm.FieldCondition(key="version", match=qm.MatchValue(value=keep_version))],
        )
        try:
            self.client.delete(self.name, points_selector=qm.FilterSelector(filter=flt), wait=True)
        except Exception as exc:
            raise IndexUnavailable(f"vector collection {self.name} refused a delete") from exc

    def delete_collection_points(self, tenant: str, collection_id: str) -> None:
        """Delete every point of a ragd collection."""
        from qdrant_client.http import models as qm

        self._delete(
            [
                qm.FieldCondition(key="tenant", match=qm.MatchValue(value=tenant)),
                qm.FieldCondition(key="collection_id", match=qm.MatchValue(value=collection_id)),
            ]
        )

    def count(self, flt: SearchFilter | None = None) -> int:
        """Exact number of points (matching ``flt`` when given)."""
        if not self.client.collection_exists(self.name):
            return 0
        try:
            res = self.client.count(self.name, count_filter=build_filter(flt) if flt else None, exact=True)
        except BadRequest:
            raise
        except Exception as exc:
            raise IndexUnavailable(f"could not count vector collection {self.name}") from exc
        return int(res.count)

    # --- reads -------------------------------------------------------------------------------

    def query(
        self,
        flt: SearchFilter,
        *,
        mode: SearchMode,
        limit: int,
        dense: Sequence[float] | npt.NDArray[np.float32] | None = None,
        sparse: SparseVector | None = None,
        hybrid: HybridParams | None = None,
        with_vectors: bool = False,
    ) -> list[SearchHit]:
        """Top ``limit`` chunks matching ``flt`` by dense, sparse or fused (hybrid) similarity."""
        from qdrant_client.http import models as qm

        if not self.client.collection_exists(self.name):
            return []
        qfilter = build_filter(flt)  # validates the filter for both paths
        if self._mirror is not None and not with_vectors:
            if (mode != "sparse" and dense is None) or (mode != "dense" and sparse is None):
                raise ValueError(f"{mode} search needs its query vectors")
            points = self._mirror.query(
                flt, mode=mode, limit=limit, dense=dense, sparse=sparse, hybrid=hybrid or HybridParams()
            )
            return [_hit(p) for p in points]
        dense_q = [float(x) for x in dense] if dense is not None else None
        sparse_q = qm.SparseVector(indices=sparse.indices, values=sparse.values) if sparse else None
        kwargs: dict[str, Any] = {"query_filter": qfilter, "limit": limit, "with_payload": True}
        if with_vectors:
            kwargs["with_vectors"] = [DENSE]
        if mode == "dense":
            if dense_q is None:
                raise ValueError("dense search needs a dense query vector")
            kwargs.update(query=dense_q, using=DENSE)
        elif mode == "sparse":
            if sparse_q is None:
                raise ValueError("sparse search needs a sparse query vector")
            if not sparse_q.indices:
                return []
            kwargs.update(query=sparse_q, using=SPARSE)
        else:
            if dense_q is None or sparse_q is None:
                raise ValueError("hybrid search needs dense and sparse query vectors")
            hp = hybrid or HybridParams()
            prefetch = [qm.Prefetch(query=dense_q, using=DENSE, filter=qfilter, limit=hp.prefetch_limit)]
            if sparse_q.indices:
                prefetch.append(
                    qm.Prefetch(query=sparse_q, using=SPARSE, filter=qfilter, limit=hp.prefetch_limit)
                )
            fusion: Any
            if hp.fusion == "dbsf":
                fusion = qm.FusionQuery(fusion=qm.Fusion.DBSF)
            else:
                weights = [hp.dense_weight, hp.sparse_weight][: len(prefetch)]
                fusion = qm.RrfQuery(rrf=qm.Rrf(k=hp.rrf_k, weights=weights))
            kwargs.update(prefetch=prefetch, query=fusion)
        try:
            res = self.client.query_points(self.name, **kwargs)
        except Exception as exc:
            raise IndexUnavailable(f"could not query vector collection {self.name}") from exc
        return [_hit(p) for p in res.points]
