"""CPU per chat call of three HTTP clients against the same local server, side by side.

    python benchmarks/http_clients.py                    # 1,024 calls, 64 in flight, each client twice

The server (in its own process) answers every POST to /v1/chat/completions at once with the same
small chat completion, so what is measured is the client: building and sending the request,
reading and decoding the answer. The request is the size of a simulator call (a 3,000-character
system prompt, a 1,500-character user prompt, a json_schema response_format). Printed per client:
CPU milliseconds per call of this process, and wall seconds.

| client | what it is |
|---|---|
| `openai SDK` | `openai.AsyncOpenAI(...).chat.completions.create` (retries off) |
| `httpx` | `httpx.AsyncClient.post` and `json.loads`, nothing else |
| `ChatClient` | `sage_gym.simulators.client.ChatClient.complete` (h11 on asyncio streams, with its retries, answer validation and deadline handling) |
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

REQUEST = {
    "model": "m",
    "messages": [{"role": "system", "content": "x" * 3000}, {"role": "user", "content": "y" * 1500}],
    "temperature": 0.7,
    "max_tokens": 512,
    "seed": 1,
    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {"type": "object"}}},
}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"change": 3, "reply": "ok"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _serve(connection, stop) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = json.dumps(ANSWER).encode()

    async def chat(request):
        await request.body()
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: TCP_NODELAY on accepted sockets
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    connection.send(sock.getsockname()[1])
    stop.wait()
    server.should_exit = True
    thread.join(5)


def openai_sdk(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)

    async def call() -> str:
        response = await client.chat.completions.create(**REQUEST)
        return response.choices[0].message.content

    return call, client.close


def plain_httpx(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer EMPTY"}, limits=limits, timeout=60)

    async def call() -> str:
        response = await client.post("/chat/completions", content=json.dumps(REQUEST).encode(), headers={"Content-Type": "application/json"})
        return json.loads(response.content)["choices"][0]["message"]["content"]

    return call, client.aclose


def chat_client(url: str, concurrency: int) -> tuple[Callable[[], Awaitable[str]], Callable[[], Awaitable[None]]]:
    from sage_gym.simulators.client import ChatClient

    client = ChatClient(url, api_key="EMPTY", max_concurrency=concurrency)

    async def call() -> str:
        return await client.complete(REQUEST)

    return call, client.aclose


CLIENTS = {"openai SDK": openai_sdk, "httpx": plain_httpx, "ChatClient": chat_client}


async def measure(make, url: str, calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `calls` calls, `concurrency` at a time, after a warm-up round."""
    call, close = make(url, concurrency)
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            assert await call() == ANSWER["choices"][0]["message"]["content"]

    try:
        await asyncio.gather(*(one() for _ in range(concurrency)))  # connections, imports
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="times each client runs (interleaved)")
    args = parser.parse_args(argv)

    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=_serve, args=(sender, stop), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{receiver.recv()}/v1"
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
        for _ in range(args.rounds):
            for name, make in CLIENTS.items():
                results[name].append(asyncio.run(measure(make, url, args.calls, args.concurrency)))
    finally:
        stop.set()
        server.join(10)
    print(f"{args.calls} calls, {args.concurrency} in flight, {args.rounds} rounds")
    print(f"{'client':12s} {'CPU ms/call':>30s} {'wall s':>24s}")
    for name, runs in results.items():
        cpu = ", ".join(f"{1000 * c / args.calls:.2f}" for c, _ in runs)
        wall = ", ".join(f"{w:.2f}" for _, w in runs)
        print(f"{name:12s} {cpu:>30s} {wall:>24s}")
    base = min(c for c, _ in results["openai SDK"])
    print(f"ChatClient / openai SDK CPU: {min(c for c, _ in results['ChatClient']) / base:.2f} (best runs)")


if __name__ == "__main__":
    main()
