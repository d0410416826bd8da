"""An OpenAI-compatible chat server for SmolLM2 (llama.cpp): the harness's out-of-process LLM.

It plays the part vLLM plays in production, so the fault scenarios can kill an LLM backend
process mid-stream and slow it down at the network edge. The delay is injected here, in the
backend, and set at run time with ``POST /_fault {"delay_s": .., "token_delay_s": ..}``; it is
never a ragd setting.

Run: ``python -m bench.reliability.llm_server --port P [--model-name smollm2]``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

_FAULT = {"delay_s": 0.0, "token_delay_s": 0.0}


def build_app(model_name: str, n_threads: int) -> Any:
    from llama_cpp import Llama
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from ragd.llm_serving.model_files import smollm2_gguf

    llm = Llama(model_path=str(smollm2_gguf()), n_ctx=4096, n_threads=n_threads, verbose=False)
    lock = threading.Lock()  # a llama.cpp context serves one request at a time

    def _kwargs(body: dict[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "messages": body.get("messages", []),
            "max_tokens": int(body.get("max_tokens") or 256),
            "temperature": float(body.get("temperature", 0.0)),
            "top_p": float(body.get("top_p", 1.0)),
            "stop": body.get("stop") or None,
        }
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            kw["response_format"] = {"type": "json_object", "schema": fmt["json_schema"].get("schema", {})}
        elif fmt.get("type") == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model_name, "object": "model"}]})

    async def fault(request: Request) -> JSONResponse:
        body = await request.json()
        for key in _FAULT:
            if key in body:
                _FAULT[key] = float(body[key])
        return JSONResponse(dict(_FAULT))

    def _complete(kw: dict[str, Any]) -> dict[str, Any]:
        time.sleep(_FAULT["delay_s"])
        with lock:
            out: dict[str, Any] = llm.create_chat_completion(**kw)  # type: ignore[assignment]
        time.sleep(_FAULT["token_delay_s"] * out.get("usage", {}).get("completion_tokens", 0))
        out["model"] = model_name
        return out

    def _stream(kw: dict[str, Any]) -> Iterator[bytes]:
        time.sleep(_FAULT["delay_s"])
        rid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        with lock:
            n = 0
            for part in llm.create_chat_completion(stream=True, **kw):
                part = dict(part)  # type: ignore[arg-type]
                part["id"], part["model"] = rid, model_name
                n += 1
                time.sleep(_FAULT["token_delay_s"])
                yield f"data: {json.dumps(part)}\n\n".encode()
        usage = {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n}
        tail = {
            "id": rid,
            "object": "chat.completion.chunk",
            "model": model_name,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(tail)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def chat(request: Request) -> Any:
        from starlette.concurrency import run_in_threadpool

        body = await request.json()
        kw = _kwargs(body)
        if body.get("stream"):
            return StreamingResponse(_stream(kw), media_type="text/event-stream")
        return JSONResponse(await run_in_threadpool(_complete, kw))

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/_fault", fault, methods=["POST"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-name", default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.model_name, args.threads), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
