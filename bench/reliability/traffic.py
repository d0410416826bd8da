"""Mixed multi-tenant traffic against a live ragd, with every response classified and checked.

Traffic classes: ``chat`` and ``chat_stream`` (``POST /v1/chat``), ``openai`` (``POST
/v1/chat/completions``), ``search``, ``upload`` (real documents), ``job`` (polling the jobs of
accepted uploads), ``session`` (reading one's own chat sessions) and ``probe`` (reading the other
tenant's documents, jobs and sessions, which must be 404). A class whose route the server does
not have is skipped and reported as such, never faked.

Each request ends as one of: ``ok``, ``fallback`` (an answer labelled as degraded), ``clean_error``
(a JSON error envelope with a request id), ``down`` (connection refused while the server itself
is being restarted on purpose) or ``lost`` (anything else: a reset, a timeout, a 5xx without an
envelope, a stream that ends without its final event).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.reliability.corpus import Doc, TenantCorpus
from bench.reliability.isolation import IsolationChecker, Leak

CHAT_CLASSES = ("chat", "chat_stream", "openai")
ALL_CLASSES = ("chat", "chat_stream", "openai", "search", "upload", "job", "session", "probe")
ROUTES = {
    "chat": ("post", "/v1/chat"),
    "chat_stream": ("post", "/v1/chat"),
    "openai": ("post", "/v1/chat/completions"),
    "search": ("post", "/v1/search"),
    "upload": ("post", "/v1/collections/{collection}/documents"),
    "job": ("get", "/v1/jobs/{job_id}"),
    "session": ("get", "/v1/sessions/{session_id}"),
}
TERMINAL = {"ready", "failed", "cancelled"}
GOOD_KINDS = ("ok", "fallback")
COLLECTION = "kb"
#: Mean pause between one user's requests, per class: people upload and poll far less often
#: than they search.
THINK_S = {"upload": 3.0, "job": 1.0, "session": 1.0, "probe": 1.0}


@dataclass
class Outcome:
    """One request as the client saw it."""

    cls: str
    tenant: str
    t: float  # seconds since the recorder started
    latency_s: float
    status: int
    kind: str  # ok | fallback | clean_error | down | lost
    detail: str = ""
    ttft_s: float | None = None
    stages_ms: dict[str, float] | None = None  # a chat turn's timings_ms: where its time went


@dataclass
class KeyInfo:
    """One API key of a tenant."""

    tenant: str
    key: str
    role: str
    key_id: str | None = None


@dataclass
class UploadRecord:
    """An accepted upload and what became of it."""

    tenant: str
    key: str
    job_id: str
    document_id: str | None
    name: str
    status: str = "queued"
    error: str | None = None
    retried: bool = False


@dataclass
class Recorder:
    """Everything a run observed."""

    started: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    uploads: dict[str, UploadRecord] = field(default_factory=dict)
    sessions: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    server_down: bool = False  # set by a scenario while it restarts ragd itself

    def add(self, o: Outcome) -> None:
        self.outcomes.append(o)

    def window(self, t0: float, t1: float) -> list[Outcome]:
        return [o for o in self.outcomes if t0 <= o.t < t1]

    def now(self) -> float:
        return time.monotonic() - self.started


def _envelope_request_id(body: Any, headers: httpx.Headers) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("request_id") or "")
    return ""


def _is_fallback(body: Any) -> bool:
    """Whether a chat answer says it is degraded (extractive, or marked as a fallback)."""
    if not isinstance(body, dict):
        return False
    for part in (body, body.get("ragd"), body.get("final")):
        if isinstance(part, dict):
            if any(part.get(k) is True for k in ("extractive", "fallback", "degraded")):
                return True
            if "extractive" in str(part.get("backend") or ""):
                return True
    return False


class Traffic:
    """Drives the classes against one server; safe to share between concurrent tasks."""

    def __init__(
        self,
        base_url: str,
        keys: dict[str, list[KeyInfo]],
        corpora: dict[str, TenantCorpus],
        checker: IsolationChecker,
        recorder: Recorder,
        routes: set[str],
        seed: int = 11,
    ) -> None:
        self.base_url = base_url
        self.keys = keys
        self.corpora = corpora
        self.checker = checker
        self.rec = recorder
        self.rng = random.Random(seed)
        self.available = {c for c, (_, path) in ROUTES.items() if path in routes}
        if "job" in self.available and "upload" in self.available:
            self.available.add("probe")
        self._upload_seq = 0
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(120.0, connect=5.0),
            # uvicorn drops idle connections after 5 s; reusing one as it closes would look like a
            # lost request, so the client lets them go first (what a careful client does).
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=2.0),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- helpers --------------------------------------------------------------------------------

    def _key(self, tenant: str, roles: tuple[str, ...] = ("admin", "editor", "reader")) -> KeyInfo:
        return self.rng.choice([k for k in self.keys[tenant] if k.role in roles])

    def _record(
        self,
        cls: str,
        tenant: str,
        t0: float,
        status: int,
        kind: str,
        detail: str = "",
        ttft: float | None = None,
    ) -> Outcome:
        o = Outcome(
            cls, tenant, t0 - self.rec.started, time.monotonic() - t0, status, kind, detail[:200], ttft
        )
        self.rec.add(o)
        return o

    def _failure(self, cls: str, tenant: str, t0: float, exc: BaseException) -> Outcome:
        # While a scenario kills ragd itself on purpose, refused connections and requests cut
        # in flight by the kill are "down" (no process is left to answer them); at any other
        # time a transport failure is a lost request.
        kind = "down" if self.rec.server_down else "lost"
        return self._record(cls, tenant, t0, 0, kind, f"{type(exc).__name__}: {exc}")

    def _classify(
        self,
        cls: str,
        tenant: str,
        t0: float,
        r: httpx.Response,
        ok_check: Any = None,
        ttft: float | None = None,
    ) -> tuple[Outcome, Any]:
        text = r.text
        self.checker.check(tenant, text, cls)
        try:
            body: Any = r.json()
        except ValueError:
            body = None
        if r.status_code < 400:
            if ok_check is not None and not ok_check(body):
                return self._record(
                    cls, tenant, t0, r.status_code, "lost", "malformed body " + text[:120]
                ), body
            kind = "fallback" if cls in CHAT_CLASSES and _is_fallback(body) else "ok"
            return self._record(cls, tenant, t0, r.status_code, kind, _backend(body), ttft), body
        rid = _envelope_request_id(body, r.headers)
        kind = "clean_error" if rid else "lost"
        code = body["error"].get("code", "") if isinstance(body, dict) and "error" in body else text[:80]
        return self._record(cls, tenant, t0, r.status_code, kind, f"{r.status_code} {code}"), body

    # -- classes --------------------------------------------------------------------------------

    async def search(self, tenant: str) -> Outcome:
        own = self.rng.random() < 0.7  # also ask for the other tenant's content: it must not come back
        other = [t for t in self.corpora if t != tenant]
        src = self.corpora[tenant if own or not other else self.rng.choice(other)]
        query = self.rng.choice(src.queries)
        k = self._key(tenant)
        t0 = time.monotonic()
        try:
            r = await self.client.post(
                "/v1/search", json={"query": query, "top_k": 5}, headers={"Authorization": f"Bearer {k.key}"}
            )
        except httpx.HTTPError as exc:
            return self._failure("search", tenant, t0, exc)
        return self._classify("search", tenant, t0, r, lambda b: isinstance(b, dict) and "hits" in b)[0]

    def _next_doc(self, tenant: str) -> tuple[Doc, str, bytes]:
        self._upload_seq += 1
        doc = self.rng.choice(self.corpora[tenant].docs)
        name = doc.name.replace(".md", f"-{self._upload_seq:05d}.md")
        body = doc.body + f"\nCopy {self._upload_seq} of {doc.marker}.\n"
        return doc, name, body.encode()

    async def upload(self, tenant: str) -> Outcome:
        k = self._key(tenant, ("admin", "editor"))
        _, name, data = self._next_doc(tenant)
        return await self.upload_file(tenant, k, name, data)

    async def upload_file(self, tenant: str, k: KeyInfo, name: str, data: bytes) -> Outcome:
        t0 = time.monotonic()
        try:
            r = await self.client.post(
                f"/v1/collections/{COLLECTION}/documents",
                files=[("files", (name, data, "text/markdown"))],
                headers={"Authorization": f"Bearer {k.key}"},
            )
        except httpx.HTTPError as exc:
            return self._failure("upload", tenant, t0, exc)
        o, body = self._classify("upload", tenant, t0, r, lambda b: isinstance(b, dict) and "files" in b)
        if r.status_code == 202 and isinstance(body, dict):
            for f in body.get("files", []):
                if f.get("status") == "queued" and f.get("job_id"):
                    self.checker.learn(tenant, "job", f["job_id"])
                    self.checker.learn(tenant, "document", f.get("document_id"))
                    self.rec.uploads[f["job_id"]] = UploadRecord(
                        tenant, k.key, f["job_id"], f.get("document_id"), name
                    )
                elif f.get("status") == "rejected":
                    o.kind, o.detail = "clean_error", f"rejected {f.get('error')}"[:200]
        return o

    async def poll_job(self, tenant: str, rec: UploadRecord | None = None) -> Outcome | None:
        if rec is None:
            pending = [
                u for u in self.rec.uploads.values() if u.tenant == tenant and u.status not in TERMINAL
            ]
            if not pending:
                pending = [u for u in self.rec.uploads.values() if u.tenant == tenant]
            if not pending:
                return None
            rec = self.rng.choice(pending)
        t0 = time.monotonic()
        try:
            r = await self.client.get(
                f"/v1/jobs/{rec.job_id}", headers={"Authorization": f"Bearer {rec.key}"}
            )
        except httpx.HTTPError as exc:
            return self._failure("job", tenant, t0, exc)
        o, body = self._classify("job", tenant, t0, r, lambda b: isinstance(b, dict) and "status" in b)
        if r.status_code == 200 and isinstance(body, dict):
            rec.status, rec.error = body["status"], body.get("error")
        elif r.status_code == 404:
            rec.status = "missing"
        return o

    def _chat_body(self, tenant: str, key: KeyInfo, stream: bool) -> tuple[dict[str, Any], bool]:
        query = self.rng.choice(self.corpora[tenant].queries)
        body: dict[str, Any] = {"message": query, "stream": stream}
        mine = self.rec.sessions.get(key.key, [])
        follow_up = bool(mine) and self.rng.random() < 0.3
        if follow_up:
            body["session_id"] = self.rng.choice(mine)[1]
        return body, follow_up

    async def chat(self, tenant: str, stream: bool = False) -> Outcome:
        cls = "chat_stream" if stream else "chat"
        k = self._key(tenant)
        body, _ = self._chat_body(tenant, k, stream)
        headers = {"Authorization": f"Bearer {k.key}"}
        t0 = time.monotonic()
        try:
            if not stream:
                r = await self.client.post("/v1/chat", json=body, headers=headers)
                o, data = self._classify(cls, tenant, t0, r, _has_answer)
                self._remember_session(tenant, k, data)
                o.stages_ms = _stages(data)
                return o
            return await self._chat_stream(tenant, k, body, t0)
        except httpx.HTTPError as exc:
            return self._failure(cls, tenant, t0, exc)

    async def _chat_stream(self, tenant: str, k: KeyInfo, body: dict[str, Any], t0: float) -> Outcome:
        cls = "chat_stream"
        async with self.client.stream(
            "POST", "/v1/chat", json=body, headers={"Authorization": f"Bearer {k.key}"}
        ) as r:
            if r.status_code >= 400 or "text/event-stream" not in r.headers.get("content-type", ""):
                await r.aread()
                o, data = self._classify(cls, tenant, t0, r, _has_answer)
                self._remember_session(tenant, k, data)
                return o
            ttft: float | None = None
            events: list[tuple[str, str]] = []
            event = "message"
            raw: list[str] = []
            async for line in r.aiter_lines():
                raw.append(line)
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    if ttft is None:
                        ttft = time.monotonic() - t0
                    events.append((event, line[5:].strip()))
                    event = "message"
        text = "\n".join(raw)
        self.checker.check(tenant, text, cls)
        final = _final_event(events)
        if final is None:
            return self._record(cls, tenant, t0, r.status_code, "lost", "stream ended without a final event")
        name, data = final
        if name == "error":
            rid = _envelope_request_id(data, r.headers) or str((data or {}).get("request_id", ""))
            kind = "clean_error" if rid else "lost"
            return self._record(cls, tenant, t0, r.status_code, kind, f"stream error {str(data)[:120]}")
        self._remember_session(tenant, k, data)
        kind = "fallback" if _is_fallback(data) else "ok"
        o = self._record(cls, tenant, t0, r.status_code, kind, _backend(data), ttft)
        o.stages_ms = _stages(data)
        return o

    def _remember_session(self, tenant: str, k: KeyInfo, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("session_id"), str):
            sid = data["session_id"]
            self.checker.learn(tenant, "session", sid)
            if sid not in {s for _, s in self.rec.sessions[k.key]}:
                self.rec.sessions[k.key].append((tenant, sid))

    async def openai_chat(self, tenant: str) -> Outcome:
        k = self._key(tenant)
        body = {
            "model": "ragd-agent",
            "messages": [{"role": "user", "content": self.rng.choice(self.corpora[tenant].queries)}],
        }
        t0 = time.monotonic()
        try:
            r = await self.client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {k.key}"}
            )
        except httpx.HTTPError as exc:
            return self._failure("openai", tenant, t0, exc)
        return self._classify("openai", tenant, t0, r, lambda b: isinstance(b, dict) and b.get("choices"))[0]

    async def read_session(self, tenant: str) -> Outcome | None:
        owned = [(key, sid) for key, sids in self.rec.sessions.items() for t, sid in sids if t == tenant]
        if not owned:
            return None
        key, sid = self.rng.choice(owned)
        t0 = time.monotonic()
        try:
            r = await self.client.get(f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            return self._failure("session", tenant, t0, exc)
        return self._classify("session", tenant, t0, r)[0]

    async def probe(self, tenant: str) -> Outcome | None:
        """Read one of the other tenant's jobs, documents or sessions: must be a clean 404."""
        theirs = [u for u in self.rec.uploads.values() if u.tenant != tenant]
        sessions = [sid for sids in self.rec.sessions.values() for t, sid in sids if t != tenant]
        targets = [f"/v1/jobs/{u.job_id}" for u in theirs[-20:]]
        targets += [f"/v1/documents/{u.document_id}" for u in theirs[-20:] if u.document_id]
        if "session" in self.available:
            targets += [f"/v1/sessions/{s}" for s in sessions[-20:]]
        if not targets:
            return None
        k = self._key(tenant)
        t0 = time.monotonic()
        try:
            r = await self.client.get(self.rng.choice(targets), headers={"Authorization": f"Bearer {k.key}"})
        except httpx.HTTPError as exc:
            return self._failure("probe", tenant, t0, exc)
        o, _ = self._classify("probe", tenant, t0, r)
        if r.status_code < 400:  # a 200 on another tenant's object is a leak even if the text is bland
            o.kind, o.detail = "lost", "cross-tenant read answered 200"
            self.checker.leaks.append(Leak(tenant, "other", "object", str(r.url.path), "probe"))
        elif r.status_code == 404:
            o.kind = "ok"
        return o

    async def one(self, cls: str, tenant: str) -> Outcome | None:
        """One request of class ``cls`` for ``tenant``."""
        if cls == "chat":
            return await self.chat(tenant, stream=False)
        if cls == "chat_stream":
            return await self.chat(tenant, stream=True)
        if cls == "openai":
            return await self.openai_chat(tenant)
        if cls == "search":
            return await self.search(tenant)
        if cls == "upload":
            return await self.upload(tenant)
        if cls == "job":
            return await self.poll_job(tenant)
        if cls == "session":
            return await self.read_session(tenant)
        if cls == "probe":
            return await self.probe(tenant)
        raise ValueError(cls)

    async def run(
        self,
        mix: dict[str, int],
        duration_s: float,
        think_s: dict[str, float] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Closed-loop users: ``mix[cls]`` concurrent users per class, split over the tenants,
        each waiting about ``think_s[cls]`` seconds between requests (default :data:`THINK_S`)."""
        deadline = time.monotonic() + duration_s
        stop = stop or asyncio.Event()
        think = THINK_S | (think_s or {})

        async def user(cls: str, tenant: str) -> None:
            while time.monotonic() < deadline and not stop.is_set():
                out = await self.one(cls, tenant)
                if out is None or out.kind in ("down",):
                    await asyncio.sleep(0.5)
                elif think.get(cls):
                    await asyncio.sleep(self.rng.uniform(0, 2 * think[cls]))

        tenants = list(self.keys)
        tasks = [
            asyncio.create_task(user(cls, tenants[i % len(tenants)]))
            for cls, n in mix.items()
            if cls in self.available and n > 0
            for i in range(n)
        ]
        if tasks:
            await asyncio.gather(*tasks)

    async def run_rate(
        self,
        rates: dict[str, float],
        duration_s: float,
        max_in_flight: int = 64,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Open-loop arrivals: ``rates[cls]`` requests per second per class (Poisson), tenants
        alternating, at most ``max_in_flight`` outstanding per class (beyond that arrivals are
        dropped and counted as ``shed`` outcomes, since the server is not keeping up)."""
        deadline = time.monotonic() + duration_s
        stop = stop or asyncio.Event()
        tenants = list(self.keys)

        async def arrivals(cls: str, rate: float) -> None:
            in_flight: set[asyncio.Task[Any]] = set()
            i = 0
            while time.monotonic() < deadline and not stop.is_set():
                await asyncio.sleep(self.rng.expovariate(rate))
                i += 1
                tenant = tenants[i % len(tenants)]
                if len(in_flight) >= max_in_flight:
                    self._record(cls, tenant, time.monotonic(), 0, "shed", "client-side backlog full")
                    continue
                task = asyncio.create_task(self.one(cls, tenant))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

        jobs = [arrivals(c, r) for c, r in rates.items() if c in self.available and r > 0]
        if jobs:
            await asyncio.gather(*jobs)


def _backend(body: Any) -> str:
    """The backend a chat answer names (``backend`` or ``backend_used``), else ``""``."""
    if isinstance(body, dict):
        for key in ("backend", "backend_used"):
            if isinstance(body.get(key), str):
                return f"backend={body[key]}"
    return ""


def _stages(body: Any) -> dict[str, float] | None:
    stages = body.get("timings_ms") if isinstance(body, dict) else None
    return {k: float(v) for k, v in stages.items()} if isinstance(stages, dict) else None


def _has_answer(body: Any) -> bool:
    return isinstance(body, dict) and any(
        isinstance(body.get(k), str) for k in ("answer", "message", "content")
    )


def _final_event(events: list[tuple[str, str]]) -> tuple[str, Any] | None:
    """The stream's closing event (``final``/``done``/``error``, or a data object with the answer)."""
    for name, data in reversed(events):
        if data == "[DONE]":
            continue
        try:
            parsed = json.loads(data)
        except ValueError:
            continue
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        label = name if name != "message" else (kind or "")
        if label in ("error",) or (
            isinstance(parsed, dict) and "error" in parsed and not _has_answer(parsed)
        ):
            return "error", parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        if label in ("final", "done", "end", "complete", "completed") or (
            isinstance(parsed, dict) and ("citations" in parsed or "answer" in parsed)
        ):
            return "final", parsed
        return None
    return None


async def fetch_routes(base_url: str) -> set[str]:
    """Every path the server's OpenAPI document lists."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
        r = await c.get("/openapi.json")
        r.raise_for_status()
        return set(r.json().get("paths", {}))
