"""Reliability benchmark: load ramp, soak and fault table against a live ragd. Prints figures.

    python bench/load.py ramp   [--deployment embedded|scaleout] [--step-s 20]
    python bench/load.py soak   [--minutes 30] [--rates search=2,chat=0.1,...]
    python bench/load.py faults [--deployment embedded|scaleout|both]
    python bench/load.py all    (ramp, then soak at 70% of the sustainable mix, then faults)

The ramp finds each class's sustainable rate alone, then runs all classes *together* at a
growing fraction of those rates (the classes share two cores, so each class's solo maximum is
not sustainable at once); the soak runs at ``--soak-fraction`` of the largest mix that met every
objective.

Every run starts ``ragd serve`` (and ``ragd worker``s, private PostgreSQL and Redis for
``scaleout``) as an operator would, bootstraps keys for two tenants with ``ragd keys create``
and checks every response for the other tenant's ids and text. A class whose route the server
does not have is skipped and listed. Figures go to stdout and, with ``--json``, to a file.
Run CPU-heavy benchmarks under ``nice``; this machine's cores are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reliability.harness import Live, live_ragd
from bench.reliability.scenarios import SCENARIOS, FaultResult
from bench.reliability.stats import ClassStats, ResourceSampler, stage_breakdown, summarize
from bench.reliability.traffic import ALL_CLASSES

#: Users per step of the ramp, per class.
LEVELS = {"search": [1, 2, 4, 8, 16, 32], "chat": [1, 2, 4], "chat_stream": [1, 2, 4], "upload": [1, 2, 4]}
SCALEOUT_FAULTS = ("kill_worker", "restart_postgres", "restart_redis")
EMBEDDED_FAULTS = ("kill_llm", "slow_llm", "fill_volume", "kill_worker")


def _objectives(args: argparse.Namespace) -> dict[str, float]:
    return {
        "search": args.search_p95_ms,
        "chat": args.chat_p95_ms,
        "chat_stream": args.chat_p95_ms,
        "upload": args.upload_p95_ms,
    }


def _meets(s: ClassStats, p95_objective_ms: float, args: argparse.Namespace) -> bool:
    """Whether one class's stats meet its p95 objective and the error-rate ceiling."""
    return s.p95_ms is not None and s.p95_ms <= p95_objective_ms and s.error_rate <= args.max_error_rate


async def ramp(live: Live, args: argparse.Namespace) -> dict[str, Any]:
    """Raise each class's users step by step until p95 or the error rate breaks its objective."""
    out: dict[str, Any] = {
        "objectives": _objectives(args),
        "error_rate_max": args.max_error_rate,
        "classes": {},
        "skipped": live.skipped_classes(tuple(LEVELS)),
    }
    for cls, levels in LEVELS.items():
        if cls not in live.traffic.available:
            continue
        steps = []
        best: dict[str, Any] | None = None
        before_uploads = set(live.rec.uploads)
        ramp_t0 = live.rec.now()
        # Uploads get shorter steps: accepting is never the limit, and every second of an upload
        # step is minutes of ingestion backlog that the ramp must drain before it goes on.
        step_s = args.upload_step_s if cls == "upload" else args.step_s
        for users in levels:
            t0 = live.rec.now()
            await live.traffic.run(
                {cls: users, "job": 1 if cls == "upload" else 0}, step_s, think_s={"upload": 0.0}
            )
            t1 = live.rec.now()
            s = summarize([o for o in live.rec.window(t0, t1) if o.cls == cls], t1 - t0)[cls]
            ok = _meets(s, _objectives(args)[cls], args)
            step = {
                "users": users,
                "rate_per_s": round(s.rate_per_s, 3),
                "n": s.n,
                "p50_ms": s.p50_ms,
                "p95_ms": s.p95_ms,
                "p99_ms": s.p99_ms,
                "ttft_p50_ms": s.ttft_p50_ms,
                "error_rate": round(s.error_rate, 4),
                "meets": ok,
            }
            steps.append(step)
            print(
                f"  ramp {cls:12s} users={users:3d} rate={s.rate_per_s:7.2f}/s p50={s.p50_ms} "
                f"p95={s.p95_ms} err={s.error_rate:.4f} {'ok' if ok else 'BREAKS'}",
                flush=True,
            )
            if ok and (best is None or s.rate_per_s > best["rate_per_s"]):
                best = step
            if not ok:
                break
        entry: dict[str, Any] = {"steps": steps, "sustainable": best}
        if cls == "upload":
            # Accepting is cheap; what an upload rate can be sustained at is what ingestion keeps
            # up with: documents made ready per second from the first upload to an empty backlog.
            ups = [u for u in live.rec.uploads.values() if u.job_id not in before_uploads]
            await _drain_quietly(live)
            took = live.rec.now() - ramp_t0
            ready = sum(u.status == "ready" for u in ups)
            entry["ingest_docs_per_s"] = round(ready / took, 3) if took else None
            entry["ingest_note"] = f"{ready} of {len(ups)} ramp uploads ready in {took:.0f} s"
            if best is not None and entry["ingest_docs_per_s"] is not None:
                best["rate_per_s"] = min(best["rate_per_s"], entry["ingest_docs_per_s"])
        out["classes"][cls] = entry
    return out


#: Fractions of each class's solo sustainable rate tried together, smallest first...
MIX_FRACTIONS = (0.15, 0.3, 0.45, 0.6, 0.8)
#: ...and, when the first of them already breaks an objective, these, largest first, until one
#: holds (session 18's scale-out mix broke at x0.15 and the soak then ran at an unproven rate).
MIX_FALLBACK_FRACTIONS = (0.1, 0.06, 0.03)
#: A mixed step lasts until its rarest class has had about this many requests, so a chat class's
#: nearest-rank p95 is the second slowest of 20 answers (a fixed 40 s step held 1-3 chats, and
#: their "p95" was the slowest of them)...
MIX_MIN_SAMPLES = 20
#: ...but no longer than this.
MIX_STEP_MAX_S = 240.0


def mix_step_s(rates: dict[str, float], floor_s: float) -> float:
    """Seconds one mixed step runs: enough for :data:`MIX_MIN_SAMPLES` of its rarest class."""
    rarest = min((r for r in rates.values() if r > 0), default=0.0)
    needed = MIX_MIN_SAMPLES / rarest if rarest else floor_s
    return round(min(MIX_STEP_MAX_S, max(floor_s, needed)), 1)


async def mixed_ramp(live: Live, solo: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    """Every class at once, at a growing fraction of its solo rate, until an objective breaks
    (stepping down through :data:`MIX_FALLBACK_FRACTIONS` when the smallest already does)."""
    objectives = _objectives(args)
    steps = []
    best: dict[str, Any] | None = None
    fractions = list(MIX_FRACTIONS)
    while fractions:
        fraction = fractions.pop(0)
        rates = {c: round(r * fraction, 3) for c, r in solo.items()}
        duration_s = mix_step_s(rates, args.step_s * 2)
        t0 = live.rec.now()
        await live.traffic.run_rate(rates | {"job": rates.get("upload", 0) * 3}, duration_s)
        t1 = live.rec.now()
        stats = summarize([o for o in live.rec.window(t0, t1) if o.cls in rates], t1 - t0)
        failing = [c for c, st in stats.items() if not _meets(st, objectives[c], args)]
        step = {
            "fraction": fraction,
            "rates": rates,
            "duration_s": duration_s,
            "classes": {
                c: {
                    "n": st.n,
                    "rate_per_s": round(st.rate_per_s, 3),
                    "p50_ms": st.p50_ms,
                    "p95_ms": st.p95_ms,
                    "error_rate": round(st.error_rate, 4),
                }
                for c, st in stats.items()
            },
            "meets": not failing,
            "chat_stages": stage_breakdown(live.rec.window(t0, t1)),
        }
        steps.append(step)
        print(
            f"  mix x{fraction:.2f} ({duration_s:.0f} s) "
            + " ".join(
                f"{c}={v['rate_per_s']}/s n={v['n']} p95={v['p95_ms']} err={v['error_rate']}"
                for c, v in step["classes"].items()
            )
            + (f" BREAKS ({', '.join(failing)})" if failing else " ok"),
            flush=True,
        )
        if "upload" in rates:
            await _drain_quietly(live)  # the next step starts with no ingestion backlog
        if not failing:
            best = step
            if fraction < MIX_FRACTIONS[0]:
                break  # stepping down: the first fraction that holds is the answer
        elif best is None:
            # Nothing has held yet: step down (an empty list ends the ramp with none sustainable).
            fractions = [f for f in MIX_FALLBACK_FRACTIONS if f < fraction][:1]
        else:
            break
    return {"steps": steps, "sustainable": best}


#: How long a ramp waits for the ingestion backlog it made: long enough for the upload ramp's
#: thousands of accepted documents at a scale-out worker's few documents per second.
DRAIN_TIMEOUT_S = 1800.0


async def _drain_quietly(live: Live) -> float:
    """Wait until every accepted upload is terminal, so the next step starts with no backlog
    (one left behind would make the next step measure ingestion, not its own load), then search
    once per tenant so the index has caught up with the drained writes."""
    from bench.reliability.fleet import drain
    from bench.reliability.traffic import TERMINAL

    t0 = time.monotonic()
    await drain(live.traffic, DRAIN_TIMEOUT_S, retry_failed=False)
    took = time.monotonic() - t0
    left = sum(u.status not in TERMINAL for u in live.traffic.rec.uploads.values())
    # One search per tenant before the next step is timed: in local mode the first search after
    # thousands of writes brings the search mirror up to date, a one-off cost of the drain.
    for tenant in list(live.traffic.keys):
        await live.traffic.search(tenant)
    note = f"; {left} jobs still pending, the next step is not clean" if left else ""
    print(f"  ingestion backlog drained in {took:.0f} s{note}", flush=True)
    return took


def profile(pid: int, seconds: int, out_dir: Path) -> dict[str, Any]:
    """py-spy samples of the server (all threads, native frames off): top functions by share."""
    raw = out_dir / f"pyspy-{pid}.txt"
    cmd = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "50",
        "-f",
        "raw",
        "-o",
        str(raw),
        "--nonblocking",
        "--subprocesses",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 or not raw.exists():
        return {"error": (done.stderr or done.stdout)[-300:]}
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any(
            f.startswith(("select (", "epoll_wait", "_worker (concurrent", "wait (threading"))
            for f in frames[-2:]
        ):
            continue  # idle threads
        total += n
        for f in dict.fromkeys(_short(f) for f in frames):
            inclusive[f] += n
        own[_short(frames[-1])] += n

    def top(c: Counter[str], k: int, only: str = "") -> list[tuple[str, float]]:
        return [(f, round(100 * v / total, 1)) for f, v in c.most_common() if only in f][:k] if total else []

    return {
        "busy_samples": total,
        "top_inclusive_ragd": top(inclusive, 15, "ragd/"),
        "top_inclusive": top(inclusive, 15),
        "top_self": top(own, 12),
    }


def _short(frame: str) -> str:
    # "encode (sentence_transformers/SentenceTransformer.py:123)" -> keep function and file
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for anchor in ("site-packages/", "/work/main/"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
    return f"{name} ({path})"


async def profiled_mix(live: Live, rates: dict[str, float], seconds: int, out_dir: Path) -> dict[str, Any]:
    """The hot path at the sustainable rates: py-spy on the server while that load runs."""
    assert live.ragd.server is not None
    task = asyncio.create_task(live.traffic.run_rate(rates, seconds + 5))
    await asyncio.sleep(3)
    prof = await asyncio.to_thread(profile, live.ragd.server.pid, seconds, out_dir)
    await task
    return prof


async def soak(
    live: Live, rates: dict[str, float], minutes: float, memtrace_snapshots: bool = True
) -> dict[str, Any]:
    """Open-loop mixed traffic at ``rates`` for ``minutes``; resources sampled every 10 s."""
    pg = live.pg
    sampler = ResourceSampler(
        pid=lambda: live.ragd.server.pid if live.ragd.server else None,
        db_connections=pg.connections if pg is not None else None,
        queue_depth=live.ragd.job_backlog,
        chunks_written=live.ragd.chunks_written,
        interval_s=10.0,
    )
    stop = asyncio.Event()
    t0 = time.monotonic()
    sampling = asyncio.create_task(sampler.run(stop, t0))
    snapshots = asyncio.create_task(_memtrace_snapshots(live, stop, memtrace_snapshots))
    start = live.rec.now()
    mix = dict(rates) | {"job": rates.get("upload", 0) * 3, "session": 0.2, "probe": 0.5}
    await live.traffic.run_rate(mix, minutes * 60)
    end = live.rec.now()
    stop.set()
    await sampling
    snaps, trim = await snapshots
    slopes = sampler.slopes()
    half = (start + end) / 2
    first = summarize(live.rec.window(start, half), half - start)
    second = summarize(live.rec.window(half, end), end - half)
    return {
        "minutes": minutes,
        "rates": mix,
        "summary": {c: vars(s) for c, s in summarize(live.rec.window(start, end), end - start).items()},
        "error_rate_first_half": {c: round(s.error_rate, 4) for c, s in first.items()},
        "error_rate_second_half": {c: round(s.error_rate, 4) for c, s in second.items()},
        "p95_first_half": {c: s.p95_ms for c, s in first.items()},
        "p95_second_half": {c: s.p95_ms for c, s in second.items()},
        "chat_stages": stage_breakdown(live.rec.window(start, end)),
        "slopes_per_min": slopes,
        # Memory that grows with the index is data, not a leak: RSS per 1,000 chunks written.
        "rss_mb_per_1000_chunks": (
            round(1000 * slopes["rss_mb"] / slopes["chunks_written"], 1)
            if slopes.get("rss_mb") is not None and slopes.get("chunks_written")
            else None
        ),
        "memtrace": _memtrace_report(snaps),
        "malloc_trim": trim,
        "samples": sampler.samples[::6],  # one a minute
        "first_sample": sampler.samples[0] if sampler.samples else None,
        "last_sample": sampler.samples[-1] if sampler.samples else None,
    }


async def _memtrace_snapshots(
    live: Live, stop: asyncio.Event, snapshots: bool, every_s: float = 60.0
) -> tuple[list[Path], dict[str, Any] | None]:
    """With ``--memtrace``: a heap snapshot now and every ``every_s`` until stopped (unless
    ``snapshots`` is off), then one ``malloc_trim`` to see how much of RSS was free heap."""
    out = live.ragd.deployment.memtrace_dir
    server = live.ragd.server
    if out is None or server is None:
        return [], None
    n = 0
    while not stop.is_set():
        if snapshots:
            os.kill(server.pid, signal.SIGUSR2)  # the server only: its worker processes don't handle it
            n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    if snapshots:
        os.kill(server.pid, signal.SIGUSR2)
        n += 1
    # Each dump takes a few seconds (a gc pass and the snapshot), one at a time.
    for _ in range(240):
        if len(list(out.glob("snap-*.json"))) >= n:
            break
        await asyncio.sleep(0.5)
    os.kill(server.pid, signal.SIGUSR1)
    trims = out / "trims.jsonl"
    for _ in range(60):
        if trims.exists() and trims.read_text().strip():
            break
        await asyncio.sleep(0.5)
    trim = json.loads(trims.read_text().splitlines()[-1]) if trims.exists() else None
    return sorted(out.glob("snap-*.pickle")), trim


def _memtrace_report(snaps: list[Path]) -> dict[str, Any] | None:
    """Diff the snapshot taken two minutes in (after warm-up) against the last one."""
    if len(snaps) < 3:
        return None
    from bench.reliability.memtrace import compare

    report = compare(snaps[2], snaps[-1])
    print(json.dumps(report, indent=1), flush=True)
    return report


def _print_faults(rows: list[FaultResult]) -> None:
    print(
        "\n| fault | deployment | requests | affected | lost | recovery s "
        "| uploads accepted/ready/failed+error"
        " (retried ok) | leaks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.skipped:
            print(f"| {r.name} | {r.deployment} | skipped: {r.skipped} | | | | | |")
            continue
        print(
            f"| {r.name} | {r.deployment} | {r.requests} | {r.affected} | {r.lost} | {r.recovery_s} | "
            f"{r.uploads_accepted}/{r.uploads_ready}/{r.uploads_failed_with_error} ({r.uploads_retried_ok}) "
            f"| {r.leaks} |"
        )
    for r in rows:
        for note in r.notes + r.lost_details + r.leak_details:
            print(f"  - {r.name} [{r.deployment}]: {note}")


async def faults(deployments: list[str], names: list[str] | None) -> list[FaultResult]:
    rows: list[FaultResult] = []
    for dep in deployments:
        wanted = [
            n for n in (SCALEOUT_FAULTS if dep == "scaleout" else EMBEDDED_FAULTS) if not names or n in names
        ]
        if not wanted:
            continue
        kwargs: dict[str, Any] = {"seed_docs": 4}
        if dep == "embedded":
            kwargs |= {"llm_proc": True, "volume_mb": 256}
        async with live_ragd(dep, **kwargs) as live:
            print(
                f"[{dep}] up in {live.startup_s:.0f} s; classes {sorted(live.traffic.available)}; "
                f"skipped {live.skipped_classes(('chat', 'chat_stream', 'openai', 'session'))}",
                flush=True,
            )
            for name in wanted:
                res = await SCENARIOS[name](live)
                print(
                    f"  {res.name}: lost={res.lost} affected={res.affected} recovery={res.recovery_s} "
                    f"{res.skipped}",
                    flush=True,
                )
                rows.append(res)
    return rows


#: What ``--env`` may set besides ``RAGD_`` settings: the C allocator's and oneDNN's knobs, for
#: memory A/B runs.
ALLOCATOR_ENV = ("MALLOC_", "LD_PRELOAD", "ONEDNN_")


def _parse_env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith(("RAGD_", *ALLOCATOR_ENV)):
        raise SystemExit(f"--env wants RAGD_NAME=value (or MALLOC_*, ONEDNN_*, LD_PRELOAD), not {text!r}")
    return name, value


def _parse_rates(text: str) -> dict[str, float]:
    """``search=2,chat=0.1`` as a dict; checked when the command line is read, before a server
    starts, so a typo costs no start-up."""
    bad = argparse.ArgumentTypeError(f"want CLASS=RATE,... with rates above 0, not {text!r}")
    try:
        rates = {k.strip(): float(v) for k, v in (p.split("=") for p in text.split(",") if p)}
    except ValueError:
        raise bad from None
    if any(not k or not r > 0 for k, r in rates.items()):  # `not r > 0` also refuses nan
        raise bad
    unknown = sorted(set(rates) - set(ALL_CLASSES))
    if unknown:
        # The traffic runner skips a class it does not know, so a typo would soak without it.
        raise argparse.ArgumentTypeError(f"unknown classes {unknown}; known: {', '.join(ALL_CLASSES)}")
    return rates


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    out_dir = Path(args.json).parent if args.json else Path(".")
    if args.command in ("ramp", "soak", "all"):
        memtrace = Path(args.memtrace).resolve() if args.memtrace else None
        server_env = dict(_parse_env(e) for e in args.env)
        async with live_ragd(
            args.deployment,
            llm_proc=args.llm_proc,
            seed_docs=args.seed_docs,
            memtrace_dir=memtrace,
            extra_env=server_env,
        ) as live:
            report["deployment"] = args.deployment
            report["server_env"] = server_env
            report["startup_s"] = round(live.startup_s, 1)
            report["notes"] = live.notes
            report["skipped_classes"] = live.skipped_classes(("chat", "chat_stream", "openai", "session"))
            print(
                f"[{args.deployment}] up in {live.startup_s:.0f} s, seeded in {live.seed_s:.0f} s; "
                f"skipped classes: {report['skipped_classes']}",
                flush=True,
            )
            rates = dict(args.rates)
            if args.command in ("ramp", "all"):
                report["ramp"] = await ramp(live, args)
                # A class that misses its objective even with one user soaks at that user's rate.
                best = {
                    c: (v["sustainable"] or v["steps"][0])["rate_per_s"]
                    for c, v in report["ramp"]["classes"].items()
                    if v["steps"]
                }
                report["sustainable_rates"] = {
                    c: v["sustainable"]["rate_per_s"]
                    for c, v in report["ramp"]["classes"].items()
                    if v["sustainable"]
                }
                report["solo_rates"] = best
                if not rates and best:
                    report["mix"] = await mixed_ramp(live, best, args)
                    sustainable = report["mix"]["sustainable"]
                    # Nothing met the objectives together: soak at the smallest mix, reported as such.
                    rates = (sustainable or report["mix"]["steps"][0])["rates"]
                if rates and args.profile_s:
                    report["profile"] = await profiled_mix(live, rates, args.profile_s, out_dir)
            if args.command == "soak" and rates and args.profile_s:
                report["profile"] = await profiled_mix(live, rates, args.profile_s, out_dir)
            if args.command in ("soak", "all") and rates:
                # Rates the operator gave are soaked as given; the fraction is of a measured mix.
                fraction = 1.0 if args.rates else args.soak_fraction
                soak_rates = {c: round(r * fraction, 3) for c, r in rates.items()}
                print(f"  soak {args.minutes} min at {soak_rates}", flush=True)
                report["soak"] = await soak(live, soak_rates, args.minutes, not args.no_snapshots)
            report["leaks"] = len(live.checker.leaks)
            report["responses_checked"] = live.checker.checked
    if args.command == "faults" or (args.command == "all" and not args.no_faults):
        deps = ["embedded", "scaleout"] if args.fault_deployment == "both" else [args.fault_deployment]
        rows = await faults(deps, args.only.split(",") if args.only else None)
        report["faults"] = [r.row() for r in rows]
        _print_faults(rows)
    return report


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ramp", "soak", "faults", "all"])
    p.add_argument("--deployment", choices=["embedded", "scaleout"], default="embedded")
    p.add_argument("--fault-deployment", choices=["embedded", "scaleout", "both"], default="both")
    p.add_argument("--only", default="", help=f"Comma-separated fault names of {sorted(SCENARIOS)}.")
    p.add_argument("--llm-proc", action="store_true", help="Put an out-of-process LLM before llama.cpp.")
    p.add_argument("--seed-docs", type=int, default=20, help="Documents per tenant before the run.")
    p.add_argument("--step-s", type=float, default=20.0, help="Seconds per ramp step.")
    p.add_argument("--upload-step-s", type=float, default=10.0, help="Seconds per upload ramp step.")
    p.add_argument("--search-p95-ms", type=float, default=1000.0)
    p.add_argument("--chat-p95-ms", type=float, default=15000.0)
    p.add_argument("--upload-p95-ms", type=float, default=2000.0)
    p.add_argument("--max-error-rate", type=float, default=0.001)
    p.add_argument(
        "--profile-s", type=int, default=20, help="py-spy seconds at the sustainable rates (0: off)."
    )
    p.add_argument("--minutes", type=float, default=30.0, help="Soak length.")
    p.add_argument(
        "--soak-fraction", type=float, default=0.7, help="Of the ramp's largest mix that met every objective."
    )
    p.add_argument(
        "--rates",
        type=_parse_rates,
        default="",
        help="Soak at exactly these rates per class (no fraction), e.g. search=2,chat=0.1,upload=0.5.",
    )
    p.add_argument("--json", default="", help="Write the report here too.")
    p.add_argument(
        "--memtrace",
        default="",
        help="Soak with the server under bench.reliability.memtrace: a heap snapshot a minute into this "
        "folder (diffed at the end), then one malloc_trim.",
    )
    p.add_argument(
        "--no-snapshots",
        action="store_true",
        help="With --memtrace: no tracing, only the malloc_trim at the end.",
    )
    p.add_argument("--no-faults", action="store_true", help="With `all`: ramp and soak only.")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="RAGD_NAME=value",
        help="A server setting for this run (repeatable), e.g. RAGD_LLM__LLAMACPP__N_THREADS=2: "
        "A/B runs of one setting under the same traffic. The C allocator's MALLOC_* variables, "
        "oneDNN's ONEDNN_* and LD_PRELOAD are accepted too (they reach ragd's processes only, not "
        "PostgreSQL or Redis).",
    )
    args = p.parse_args()
    report = asyncio.run(main(args))
    text = json.dumps(report, indent=1, default=str)
    if args.json:
        Path(args.json).write_text(text)
    with contextlib.suppress(BrokenPipeError):
        print(text)


if __name__ == "__main__":
    cli()
