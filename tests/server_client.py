"""lamina serve, driven by the official openai client (tests/server.sh).

argv: PORT KEY REFS.json MODEL_NAME.  REFS holds `lamina run`'s greedy
texts: {"completion": {prompt: text}, "chat": {prompt: text}, "n": N}.
Prints one line per failed check and exits 1 if any failed."""
import concurrent.futures
import http.client
import json
import os
import socket
import sys
import time

import openai

port, key, refs_path, model = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
refs = json.load(open(refs_path))
N = refs["n"]
base = f"http://127.0.0.1:{port}"
# under ASan/UBSan on a slow 2-core machine a request takes minutes, not seconds
TIMEOUT = 600 if os.environ.get("LAMINA_SANITIZED") else 120
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=TIMEOUT)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def complete(prompt, stream=False, **kw):
    args = dict(model=model, prompt=prompt, max_tokens=N, temperature=0, **kw)
    if not stream:
        r = client.completions.create(**args)
        return r.choices[0].text, r
    try:
        chunks = list(client.completions.create(stream=True, **args))
    except openai.APIConnectionError as e:
        # Once, under the sanitizers on a loaded 2-core machine, a stream
        # among 16 concurrent ones was cut mid-body ("incomplete chunked
        # read"); it did not recur and has no known cause.  There, and only
        # there, it is said and retried once; the text is still checked.
        if not os.environ.get("LAMINA_SANITIZED"):
            raise
        print(f"WARN: stream for {prompt!r} cut ({e}); retried once", flush=True)
        chunks = list(client.completions.create(stream=True, **args))
    return "".join(c.choices[0].text for c in chunks if c.choices), chunks


def chat(prompt, stream=False, **kw):
    args = dict(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=N,
                temperature=0, **kw)
    if not stream:
        r = client.chat.completions.create(**args)
        return r.choices[0].message.content, r
    chunks = list(client.chat.completions.create(stream=True, **args))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


# ---- models
models = client.models.list()
check([m.id for m in models.data] == [model], f"models list: {[m.id for m in models.data]}")

# ---- greedy text equals `lamina run` (with --chat for chat), whole and streamed
for prompt, want in refs["completion"].items():
    text, r = complete(prompt)
    check(text == want, f"completion {prompt!r}: {text!r} != run's {want!r}")
    check(r.usage.completion_tokens <= N and r.usage.prompt_tokens > 0
          and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
          f"completion usage {r.usage}")
    check(r.choices[0].finish_reason in ("stop", "length"), f"finish {r.choices[0].finish_reason}")
    streamed, chunks = complete(prompt, stream=True)
    check(streamed == want, f"streamed completion {prompt!r}: {streamed!r} != {want!r}")
    check(chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason,
          "streamed completion's last chunk has the finish_reason")
for prompt, want in refs["chat"].items():
    text, r = chat(prompt)
    check(text == want, f"chat {prompt!r}: {text!r} != run --chat's {want!r}")
    check(r.choices[0].message.role == "assistant", "chat role")
    streamed, chunks = chat(prompt, stream=True, stream_options={"include_usage": True})
    check(streamed == want, f"streamed chat {prompt!r}: {streamed!r} != {want!r}")
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens
          == r.usage.completion_tokens, f"include_usage chunk: {chunks[-1].usage}")

# ---- stop strings end the text and are not in it, whole and streamed
prompt, want = next(iter(refs["completion"].items()))
# from inside the first word over a later token: a stream must hold back the
# text that could start it, and never send what the stop cuts off
stop = want.strip()[2:8] if len(want.strip()) > 8 else None
if stop:
    cut = want[:want.index(stop)]
    text, r = complete(prompt, stop=[stop])
    check(text == cut and r.choices[0].finish_reason == "stop",
          f"stop {stop!r}: {text!r} ({r.choices[0].finish_reason}), want {cut!r}")
    streamed, _ = complete(prompt, stream=True, stop=stop)
    check(streamed == cut, f"streamed stop {stop!r}: {streamed!r}, want {cut!r}")

# ---- 16 concurrent requests: each text equals its sequential result
prompts = [f"Item {i}: the number {i * 7} is" for i in range(8)] + \
    [f"Story {i}. Once upon a time" for i in range(8)]
sequential = {p: complete(p)[0] for p in prompts}
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    streams = [i % 2 == 1 for i in range(16)]
    got = list(pool.map(lambda a: complete(a[0], stream=a[1])[0], zip(prompts, streams)))
for p, text in zip(prompts, got):
    check(text == sequential[p], f"concurrent {p!r}: {text!r} != sequential {sequential[p]!r}")

# ---- errors: status codes and OpenAI's error object


class Response:
    def __init__(self, status, headers, text):
        self.status_code, self.headers, self.text = status, headers, text

    def json(self):
        return json.loads(self.text)


def raw(method, path, body=None, auth=True, headers=None):
    """One request on its own connection, with the standard library only."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = f"Bearer {key}"
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=TIMEOUT)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return Response(r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace"))
    except (BrokenPipeError, ConnectionResetError) as e:
        return Response(0, {}, f"connection error: {e}")
    finally:
        c.close()


def expect(status, resp, what):
    try:
        err = resp.json()["error"]
        shaped = isinstance(err["message"], str) and "type" in err and "code" in err
    except Exception:
        shaped = False
    check(resp.status_code == status and shaped,
          f"{what}: got {resp.status_code} {resp.text[:200]!r}, want {status} with an error object")


expect(400, raw("POST", "/v1/completions", b'{"prompt": "x", '), "malformed JSON")
expect(400, raw("POST", "/v1/completions", b'[1, 2]'), "a body that is not an object")
expect(400, raw("POST", "/v1/completions", b'{"prompt": 7}'), "prompt of the wrong type")
expect(400, raw("POST", "/v1/completions", b'{"prompt": "x", "temperature": "hot"}'),
       "temperature of the wrong type")
expect(400, raw("POST", "/v1/chat/completions", b'{"messages": "hi"}'), "messages not an array")
expect(400, raw("POST", "/v1/completions", b'{"prompt": ""}'), "empty prompt")
expect(400, raw("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": -1}'),
       "max_tokens -1")
expect(400, raw("POST", "/v1/completions", b'{"prompt": "x", "max_tokens": 1e99}'),
       "max_tokens 1e99")
long_prompt = json.dumps({"prompt": "hello " * 3000}).encode()
r = raw("POST", "/v1/completions", long_prompt)
expect(400, r, "a prompt longer than the context")
check(r.status_code != 400 or r.json()["error"]["code"] == "context_length_exceeded",
      "context_length_exceeded code")
expect(404, raw("GET", "/v2/nothing"), "unknown route")
expect(405, raw("GET", "/v1/completions"), "wrong method")
expect(401, raw("GET", "/v1/models", auth=False), "missing key")
expect(401, raw("GET", "/v1/models", headers={"Authorization": "Bearer wrong"}, auth=False),
       "wrong key")
expect(413, raw("POST", "/v1/completions", b'{"prompt": "' + b"a" * (300 << 10) + b'"}'),
       "body over --max-body")
try:
    client.completions.create(model=model, prompt="")
    check(False, "the openai client got no error for an empty prompt")
except openai.BadRequestError as e:
    check(e.status_code == 400, f"openai client: empty prompt -> {e.status_code}")
try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "the openai client got no error for a wrong key")
except openai.AuthenticationError as e:
    check(e.status_code == 401, f"openai client: wrong key -> {e.status_code}")
check(raw("GET", "/health", auth=False).json() == {"status": "ok"}, "health without a key")

# ---- a client that goes away mid-stream frees its slot at once


def metric(name):
    for line in raw("GET", "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


failed_before = metric("lamina_requests_failed_total")
s = socket.create_connection(("127.0.0.1", int(port)))
body = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "stream": True,
                   "temperature": 0}).encode()
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
          b"\r\n\r\n" + body)
got = b""
while got.count(b"data: ") < 3:
    got += s.recv(4096)
check(metric("lamina_slots_busy") == 1, "the streaming request holds a slot")
s.close()
# freed, not finished: the request counts as failed below (finishing its 400
# tokens would count as a success); the wait allows for a loaded machine
deadline = time.time() + 30
while time.time() < deadline and metric("lamina_slots_busy") != 0:
    time.sleep(0.05)
check(metric("lamina_slots_busy") == 0, "a client gone mid-stream freed its slot")
check(metric("lamina_requests_failed_total") == failed_before + 1,
      "the abandoned request counts as failed")

# ---- still healthy after all of it
check(raw("GET", "/health").status_code == 200, "healthy at the end")
text, _ = complete(next(iter(refs["completion"])))
check(text == next(iter(refs["completion"].values())), "still gives run's text at the end")
m = raw("GET", "/metrics").text
for name in ("lamina_requests_total", "lamina_tokens_generated_total", "lamina_tokens_per_second",
             "lamina_queue_length", "lamina_slots_busy"):
    check(f"\n{name} " in m, f"/metrics has {name}")
print(f"server client: {'FAILED' if failures else 'ok'}, {len(failures)} failures")
sys.exit(1 if failures else 0)
