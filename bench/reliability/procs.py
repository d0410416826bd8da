"""The processes a reliability run owns: ragd servers and workers, the LLM server, a private
Redis and a private PostgreSQL cluster, and a tiny data volume.

Everything listens on 127.0.0.1 on a free port, lives under one work directory and is stopped by
pid: a run never touches the shared PostgreSQL/Redis that other tests use.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAGD = str(VENV_BIN / "ragd")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout_s: float, what: str, interval_s: float = 0.25) -> float:
    """Call ``check()`` until it is truthy; return the seconds it took, or raise TimeoutError."""
    start = time.monotonic()
    while True:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - start
        except Exception:
            pass
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


class Proc:
    """One child process with its log file; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # a new session: signals to us never reach it by accident
            self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group this child leads (its own children included)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        try:
            assert self.popen is not None
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# --- backing services --------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free loopback port, no persistence (like the CI one)."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.dir = work / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.dir)]
        self.proc = Proc("redis", argv, dict(os.environ), work)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc.start()
        wait_until(self.ping, 20, "redis")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def restart(self) -> None:
        """``shutdown nosave`` semantics: the process dies, everything queued in it is gone."""
        self.proc.kill(signal.SIGKILL)
        assert self.proc.popen is not None
        self.proc.popen.wait(10)
        self.start()

    def stop(self) -> None:
        self.proc.stop()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb in a temp dir, run as the postgres user)."""

    def __init__(self, work: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.bin = bins[-1].parent
        self.port = free_port()
        self.dir = work / "pg"
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/ragd"

    def _as_pg(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
                self.dir.parent.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
            self._as_pg(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self._ctl("start", "-w")
        self._as_pg(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "ragd",
            check=False,
        )

    def _ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
        opts += " -c max_connections=200 -c fsync=off"
        self._as_pg(
            str(self.bin / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-o",
            opts,
            "-t",
            "60",
            "-l",
            str(self.dir / "pg.log"),
            *extra,
        )

    def restart(self) -> None:
        """A fast restart (every connection is cut), like ``pg_ctlcluster ... restart``."""
        self._ctl("restart", "-m", "fast", "-w")

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._as_pg(
                    str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", check=False
                )

    def connections(self) -> int:
        """Backends connected to the ragd database now."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=ragd", connect_timeout=3
        ) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity where datname='ragd' and pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0


class TinyVolume:
    """A tmpfs of a few MB mounted for the data directory, so the disk can really fill up."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.filler = path / ".filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def fill(self) -> int:
        """Write a filler file until the volume has no space left; return its size."""
        written = 0
        try:
            fh = self.filler.open("wb", buffering=0)  # unbuffered: no flush left to fail at close
        except OSError:  # already full
            return 0
        try:
            for size in (1 << 20, 65536, 4096, 512):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        written += fh.write(block) or 0
        finally:
            with contextlib.suppress(OSError):
                fh.close()
        return written

    def usage(self) -> dict[str, float]:
        """MB used per top-level entry of the data directory (what fills the volume)."""
        out: dict[str, float] = {}
        for top in (self.path / "data").iterdir() if (self.path / "data").exists() else []:
            files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
            out[top.name] = round(sum(p.stat().st_size for p in files) / 2**20, 2)
        return out

    def free(self) -> None:
        with contextlib.suppress(OSError):
            self.filler.unlink()

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True, timeout=30)


# --- ragd --------------------------------------------------------------------------------------


@dataclass
class Deployment:
    """How ragd is configured for a run: embedded defaults or the scale-out stack."""

    name: str
    db_url: str | None = None
    redis_url: str | None = None
    llm_url: str | None = None  # an OpenAI-compatible server tried before the embedded model
    extra_env: dict[str, str] = field(default_factory=dict)
    memtrace_dir: Path | None = None  # run the server under bench.reliability.memtrace


class Ragd:
    """``ragd serve`` (and ``ragd worker`` processes) the way an operator starts them."""

    def __init__(self, work: Path, deployment: Deployment, data_dir: Path | None = None) -> None:
        self.work = work
        self.deployment = deployment
        self.data_dir = data_dir or work / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self._n = 0

    def env(self) -> dict[str, str]:
        d = self.deployment
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "RAGD_ENV": "development",
                "RAGD_DATA_DIR": str(self.data_dir),
                "RAGD_API__PORT": str(self.port),
                "RAGD_LOG_LEVEL": "WARNING",
                # Capacity is what a ramp measures, so per-key limits are set out of the way.
                "RAGD_AUTH__RATE_LIMIT_PER_MINUTE": "1000000",
                "RAGD_AUTH__MAX_CONCURRENT_PER_KEY": "256",
                "RAGD_EVALS__DRIFT_CHECK_INTERVAL_S": "0",
                "RAGD_LLM__LLAMACPP__N_THREADS": "1",
                # A job whose worker died is re-run when its lease expires (progress renews it):
                # 30 s instead of 300 s, so a recovery is measured in a short run.
                "RAGD_QUEUE__LEASE_S": "30",
            }
        )
        if d.db_url:
            env["RAGD_DB__URL"] = d.db_url
        if d.redis_url:
            env["RAGD_QUEUE__BACKEND"] = "celery"
            env["RAGD_QUEUE__REDIS_URL"] = d.redis_url
            env["RAGD_QUEUE__DISPATCH_INTERVAL_S"] = "2"
        if d.llm_url:
            env["RAGD_LLM__CHAIN"] = json.dumps(["openai", "llamacpp"])
            backend = {
                "name": "llm-proc",
                "base_url": d.llm_url,
                "model": "smollm2",
                "timeout_s": 30,
                "max_retries": 1,
                "context_window": 4096,
            }
            env["RAGD_LLM__OPENAI_BACKENDS"] = json.dumps([backend])
            env["RAGD_LLM__BREAKER_RESET_S"] = "5"
        env.update(d.extra_env)
        return env

    def start(self, timeout_s: float = 240.0) -> float:
        """Start ``ragd serve`` and wait for /healthz; return the seconds it took."""
        argv = [RAGD, "serve"]
        if self.deployment.memtrace_dir is not None:
            argv = [
                sys.executable,
                "-m",
                "bench.reliability.memtrace",
                str(self.deployment.memtrace_dir),
                "serve",
            ]
        self.server = Proc("ragd-serve", argv, self.env(), self.work).start()
        return self.wait_up(timeout_s)

    def wait_up(self, timeout_s: float) -> float:
        def up() -> bool:
            if self.server is not None and not self.server.alive():
                raise RuntimeError("ragd serve exited:\n" + self.server.tail())
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200

        try:
            return wait_until(up, timeout_s, "ragd serve", 0.5)
        except RuntimeError as exc:
            raise TimeoutError(str(exc)) from None

    def restart_server(self, sig: int = signal.SIGKILL, timeout_s: float = 240.0) -> float:
        assert self.server is not None
        self.server.kill(sig)
        assert self.server.popen is not None
        self.server.popen.wait(30)
        return self.start(timeout_s)

    def start_worker(self) -> Proc:
        self._n += 1
        worker = Proc(f"ragd-worker-{self._n}", [RAGD, "worker"], self.env(), self.work).start()
        self.workers.append(worker)
        return worker

    def cli(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RAGD, *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    #: Set when ``ragd keys create`` is missing and the stand-in minted the keys.
    used_key_standin = False

    def create_key(self, tenant: str, role: str = "admin") -> str:
        """Bootstrap a key with ``ragd keys create`` (its stdout is only the key)."""
        done = self.cli("keys", "create", "--role", role, "--tenant", tenant)
        if done.returncode == 2 and "No such command" in done.stderr:
            Ragd.used_key_standin = True
            done = subprocess.run(
                [sys.executable, "-m", "bench.reliability.bootstrap_key", role, tenant],
                env=self.env(),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"ragd keys create failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        key = done.stdout.strip().splitlines()[-1].strip()
        if not key.startswith("ragd_"):
            raise RuntimeError(f"ragd keys create printed no key: {done.stdout[-200:]!r}")
        return key

    def job_backlog(self) -> int | None:
        """Jobs not yet finished (queued or running), read straight from the metadata store."""
        return self._scalar("select count(*) from jobs where status in ('queued', 'running')")

    def chunks_written(self) -> int | None:
        """Chunks of every document version ever indexed, replaced or deleted ones included (what
        an in-memory index holds until a restart: Qdrant local mode only flags deleted points)."""
        return self._scalar("select coalesce(sum(chunk_count), 0) from document_versions")

    def _scalar(self, sql: str) -> int | None:
        if self.deployment.db_url:
            import psycopg

            dsn = self.deployment.db_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                row = conn.execute(sql).fetchone()
        else:
            import sqlite3

            db = self.data_dir / "ragd.db"
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
                row = conn.execute(sql).fetchone()
        return int(row[0]) if row else None

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        if self.server is not None:
            self.server.stop()


class LLMServer:
    """The out-of-process OpenAI-compatible LLM (``bench.reliability.llm_server``)."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "bench.reliability.llm_server", "--port", str(self.port)]
        env = dict(os.environ) | {"HF_HUB_OFFLINE": "1"}
        self.proc = Proc("llm-server", argv, env, work)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> float:
        self.proc.start()
        return wait_until(
            lambda: httpx.get(f"{self.url}/models", timeout=2).status_code == 200, timeout_s, "LLM server"
        )

    def set_delay(self, delay_s: float, token_delay_s: float = 0.0) -> None:
        httpx.post(
            f"http://127.0.0.1:{self.port}/_fault",
            json={"delay_s": delay_s, "token_delay_s": token_delay_s},
            timeout=5,
        )

    def stop(self) -> None:
        self.proc.stop()
