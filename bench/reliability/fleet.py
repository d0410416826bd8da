"""Setting up two tenants on a live ragd, and proving afterwards that no upload was lost.

Keys come from ``ragd keys create`` (the operator's bootstrap). Each tenant gets an admin key,
editor keys and a reader key; the admin creates the collection ``kb`` (the same name in both
tenants, on purpose) and grants the other keys on it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from bench.reliability.procs import Ragd
from bench.reliability.traffic import COLLECTION, TERMINAL, KeyInfo, Traffic, UploadRecord


def create_keys(
    ragd: Ragd, tenants: list[str], editors: int = 2, readers: int = 1
) -> dict[str, list[KeyInfo]]:
    """Every tenant's keys, minted with ``ragd keys create`` (a few at a time)."""
    plan = [(t, "admin") for t in tenants]
    plan += [(t, "editor") for t in tenants for _ in range(editors)]
    plan += [(t, "reader") for t in tenants for _ in range(readers)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        keys = list(pool.map(lambda tr: ragd.create_key(tr[0], tr[1]), plan))
    out: dict[str, list[KeyInfo]] = {t: [] for t in tenants}
    for (tenant, role), key in zip(plan, keys, strict=True):
        out[tenant].append(KeyInfo(tenant, key, role))
    return out


async def setup_collections(base_url: str, keys: dict[str, list[KeyInfo]]) -> None:
    """Create ``kb`` in every tenant and grant the tenant's other keys on it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        for infos in keys.values():
            admin = next(k for k in infos if k.role == "admin")
            h = {"Authorization": f"Bearer {admin.key}"}
            r = await c.post("/v1/collections", json={"name": COLLECTION}, headers=h)
            if r.status_code not in (201, 409):
                raise RuntimeError(f"creating the collection failed: {r.status_code} {r.text[:200]}")
            for k in infos:
                who = await c.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {k.key}"})
                who.raise_for_status()
                k.key_id = who.json().get("key_id")
                if k.role == "admin" or not k.key_id:
                    continue
                perm = "write" if k.role == "editor" else "read"
                g = await c.put(
                    f"/v1/collections/{COLLECTION}/grants",
                    headers=h,
                    json={"subject_type": "key", "subject": k.key_id, "permission": perm},
                )
                if g.status_code >= 400:
                    raise RuntimeError(f"granting failed: {g.status_code} {g.text[:200]}")


async def seed(traffic: Traffic, per_tenant: int, timeout_s: float = 600.0) -> float:
    """Upload ``per_tenant`` documents per tenant and wait until they are ready; return seconds."""
    t0 = time.monotonic()
    for tenant in traffic.keys:
        for _ in range(per_tenant):
            await traffic.upload(tenant)
    await drain(traffic, timeout_s, retry_failed=False)
    return time.monotonic() - t0


async def drain(traffic: Traffic, timeout_s: float, retry_failed: bool = True) -> None:
    """Poll every accepted job until it is terminal; retry failed ones once (and wait again)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [u for u in traffic.rec.uploads.values() if u.status not in TERMINAL]
        if not pending:
            failed = [u for u in traffic.rec.uploads.values() if u.status == "failed" and not u.retried]
            if not (retry_failed and failed):
                return
            for u in failed:
                await retry(traffic, u)
            continue
        for u in pending[:50]:
            await traffic.poll_job(u.tenant, u)
        await asyncio.sleep(1.0)


async def retry(traffic: Traffic, u: UploadRecord) -> None:
    """``POST /v1/jobs/{id}/retry`` for a failed upload (the retry must then work)."""
    u.retried = True
    r = await traffic.client.post(f"/v1/jobs/{u.job_id}/retry", headers={"Authorization": f"Bearer {u.key}"})
    if r.status_code == 202:
        u.status = "queued"


@dataclass
class LedgerReport:
    """What became of every accepted upload."""

    accepted: int = 0
    ready: int = 0
    failed_with_error: int = 0
    retried_ok: int = 0
    lost: list[str] = field(default_factory=list)  # job ids not terminal or gone
    duplicated: list[str] = field(default_factory=list)  # document ids listed twice or extra
    failed_without_error: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)  # documents no accepted upload explains

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.failed_without_error)


async def verify_ledger(traffic: Traffic) -> LedgerReport:
    """Check every accepted upload against the server's document lists (after :func:`drain`)."""
    rep = LedgerReport()
    ups = list(traffic.rec.uploads.values())
    rep.accepted = len(ups)
    for u in ups:
        if u.status == "ready":
            rep.ready += 1
            rep.retried_ok += int(u.retried)
        elif u.status == "failed":
            if u.error:
                rep.failed_with_error += 1
            else:
                rep.failed_without_error.append(u.job_id)
        else:
            rep.lost.append(u.job_id)
    for tenant, infos in traffic.keys.items():
        admin = next(k for k in infos if k.role == "admin")
        accepted_docs = {u.document_id for u in ups if u.tenant == tenant and u.document_id}
        seen: dict[str, int] = {}
        offset = 0
        while True:
            r = await traffic.client.get(
                f"/v1/collections/{COLLECTION}/documents",
                params={"offset": offset, "limit": 500},
                headers={"Authorization": f"Bearer {admin.key}"},
            )
            r.raise_for_status()
            page = r.json()
            traffic.checker.check(tenant, r.text, "documents")
            for d in page["items"]:
                seen[d["id"]] = seen.get(d["id"], 0) + 1
                if d["id"] in accepted_docs and d.get("latest_version", 1) != 1:
                    rep.duplicated.append(d["id"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        rep.duplicated += [d for d, n in seen.items() if n > 1]
        rep.unaccounted += [d for d in seen if d not in accepted_docs]
        rep.lost += [f"doc:{d}" for d in accepted_docs if d not in seen]
    return rep
