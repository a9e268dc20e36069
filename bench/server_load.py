"""A bounded load on an OpenAI-compatible server (bench/run-server-bench).

argv: BASE_URL MODEL [REQUESTS=64] [CLIENTS=16] [TOKENS=32] [KIND=chat].  Each
of CLIENTS threads streams requests (openai client, greedy, max_tokens
TOKENS, distinct prompts) until REQUESTS are done: chat completions (a
prompt of some 45 tokens with SmolLM2's template), or with KIND completion
text completions of a prompt of a few tokens.  Prints one JSON object:
aggregate generated tokens/s over the wall time, the prompt and generated
token totals (from usage), p50/p95 time to first token and latency in
seconds, errors."""
import json
import statistics
import sys
import threading
import time

import openai

base, model = sys.argv[1], sys.argv[2]
n_requests = int(sys.argv[3]) if len(sys.argv) > 3 else 64
n_clients = int(sys.argv[4]) if len(sys.argv) > 4 else 16
n_tokens = int(sys.argv[5]) if len(sys.argv) > 5 else 32
kind = sys.argv[6] if len(sys.argv) > 6 else "chat"
client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=600)
lock = threading.Lock()
waiting = list(range(n_requests))
ttft, latency, tokens, prompts, errors = [], [], [], [], []


def one(i):
    t0 = time.perf_counter()
    first = None
    used = prompt = 0
    args = dict(model=model, max_tokens=n_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True})
    if kind == "chat":
        stream = client.chat.completions.create(messages=[
            {"role": "user", "content": f"Request {i}: tell me a story about the number {i}."}],
            **args)
    else:
        stream = client.completions.create(prompt=f"Story {i}:", **args)
    for chunk in stream:
        text = chunk.choices and (chunk.choices[0].delta.content if kind == "chat"
                                  else chunk.choices[0].text)
        if first is None and text:
            first = time.perf_counter() - t0
        if chunk.usage:
            used, prompt = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
    return (first if first is not None else time.perf_counter() - t0, time.perf_counter() - t0,
            used, prompt)


def worker():
    while True:
        with lock:
            if not waiting:
                return
            i = waiting.pop(0)
        try:
            f, l, u, p = one(i)
            with lock:
                ttft.append(f), latency.append(l), tokens.append(u), prompts.append(p)
        except Exception as e:  # counted, and the load goes on
            with lock:
                errors.append(repr(e)[:200])


start = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(n_clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start


def pct(xs, p):
    return statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else (xs[0] if xs else 0)


print(json.dumps({
    "requests": n_requests, "clients": n_clients, "kind": kind, "max_tokens": n_tokens,
    "wall_s": round(wall, 2), "completion_tokens": sum(tokens), "prompt_tokens": sum(prompts),
    "tokens_per_s": round(sum(tokens) / wall, 2),
    "ttft_p50_s": round(pct(ttft, 50), 3), "ttft_p95_s": round(pct(ttft, 95), 3),
    "latency_p50_s": round(pct(latency, 50), 3), "latency_p95_s": round(pct(latency, 95), 3),
    "errors": len(errors), "first_error": errors[0] if errors else None}))
