"""Real documents for the two tenants, built from SciFact abstracts and HotpotQA paragraphs.

Each tenant gets a disjoint slice; every document carries a marker word unique to its tenant
(``ALPHAQZ0007``), and a signature (a 48-character slice of its own text) is kept, so any response
to the other tenant that contains either is a leak.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TENANT_TAGS = {"alpha": "ALPHAQZ", "bravo": "BRAVOQZ"}


@dataclass(frozen=True)
class Doc:
    """One uploadable file."""

    tenant: str
    name: str
    body: str
    marker: str
    signature: str
    query: str  # a question its own tenant might ask about it


@dataclass
class TenantCorpus:
    """A tenant's documents and the queries its users ask."""

    tenant: str
    docs: list[Doc] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


def _signature(text: str) -> str:
    words = text.split()
    mid = max(0, len(words) // 2 - 4)
    return " ".join(words[mid : mid + 8])[:48]


def load_corpora(per_tenant: int = 120, seed: int = 7, data: Path = DATA) -> dict[str, TenantCorpus]:
    """``per_tenant`` documents per tenant: half SciFact abstracts, half HotpotQA paragraphs."""
    rng = random.Random(seed)
    scifact: list[tuple[str, str, str]] = []
    with (data / "scifact" / "corpus.jsonl").open() as fh:
        for i, line in enumerate(fh):
            if i >= 4000:
                break
            row = json.loads(line)
            if len(row["text"]) > 400:
                scifact.append(("scifact", row["title"], row["text"]))
    hotpot: dict[str, tuple[str, str, str]] = {}
    with (data / "hotpotqa" / "dev100.jsonl").open() as fh:
        for line in fh:
            for ctx in json.loads(line)["contexts"]:
                if len(ctx["text"]) > 200:
                    hotpot.setdefault(ctx["text"], ("hotpotqa", ctx["title"], ctx["text"]))
    rng.shuffle(scifact)
    hp = list(hotpot.values())
    rng.shuffle(hp)
    half = per_tenant // 2
    out: dict[str, TenantCorpus] = {}
    for t, (tenant, tag) in enumerate(TENANT_TAGS.items()):
        rows = scifact[t * half : (t + 1) * half] + hp[t * half : (t + 1) * half]
        corpus = TenantCorpus(tenant)
        for i, (source, title, text) in enumerate(rows):
            marker = f"{tag}{i:04d}"
            body = f"# {title}\n\nReference {marker}.\n\n{text}\n"
            query = title if source == "scifact" else f"What is known about {title}?"
            corpus.docs.append(Doc(tenant, f"{source}-{marker}.md", body, marker, _signature(text), query))
            corpus.queries.append(query)
        out[tenant] = corpus
    # A signature is only evidence of a leak if no other tenant's document contains it too
    # (HotpotQA paragraphs about one subject share sentences).
    for tenant, corpus in out.items():
        others = [d.body for t, c in out.items() if t != tenant for d in c.docs]
        corpus.docs = [
            dataclasses.replace(d, signature="") if any(d.signature in b for b in others) else d
            for d in corpus.docs
        ]
    return out
