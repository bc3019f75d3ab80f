#!/usr/bin/env python3
"""Checks a chat-completions server with the official `openai` Python SDK.

    python3 check_with_openai_sdk.py http://127.0.0.1:PORT/v1 [--api-key K] [--ca FILE]

Made for chat_server.py: the SDK parses every answer into its own types, so a
reply shape that drifts from the real API fails here. Checks:
  a. a non-streaming completion: content, finish_reason, usage, id, model
  b. the same prompt streamed with stream_options.include_usage: the deltas
     concatenate to the non-streamed reply and the usage arrives in the last
     chunk (with no choices)
  c. response_format json_schema: the content is a JSON object with the
     schema's required keys; `json:` forces a reply as given; the SDK's own
     structured-output parser reads the reply into a pydantic model
  d. with --api-key: a wrong key raises openai.AuthenticationError
  e. client.models.list()
  f. an unknown path raises openai.NotFoundError
Prints `ok` and exits 0 when all pass; prints `FAIL: ...` and exits 1 otherwise
(2 when the SDK is not installed: python3 -m pip install openai).
"""

import argparse
import json
import ssl
import sys
import time

try:
    import openai
    from openai import OpenAI
except ImportError:
    sys.stderr.write("FAIL: the openai package is not installed (python3 -m pip install openai)\n")
    sys.exit(2)

MODEL = "stand-in-model"
PROMPT = "Say hello to the test suite."
DEFAULT_REPLY = "Hello from the stand-in."

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "done": {"type": "boolean"},
        "mood": {"type": "string", "enum": ["calm", "busy"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "count", "score", "done", "mood", "tags", "owner"],
    "additionalProperties": False,
}


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def words(text):
    return max(1, len(text.split()))


def check_completion(client):
    """(a) a non-streaming completion, parsed by the SDK."""
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are a test."}, {"role": "user", "content": PROMPT}],
        temperature=0,
        max_completion_tokens=64,
    )
    expect(isinstance(r, openai.types.chat.ChatCompletion), f"(a) not a ChatCompletion: {type(r)}")
    expect(r.object == "chat.completion", f"(a) object is {r.object!r}")
    expect(r.id.startswith("chatcmpl-"), f"(a) id {r.id!r} does not start with chatcmpl-")
    expect(r.model == MODEL, f"(a) model {r.model!r}, asked for {MODEL!r}")
    expect(isinstance(r.created, int) and r.created > 0, f"(a) created is {r.created!r}")
    expect(len(r.choices) == 1, f"(a) {len(r.choices)} choices")
    choice = r.choices[0]
    expect(choice.index == 0, f"(a) choice index {choice.index}")
    expect(choice.message.role == "assistant", f"(a) role {choice.message.role!r}")
    expect(choice.message.content == DEFAULT_REPLY, f"(a) content {choice.message.content!r}")
    expect(choice.message.refusal is None, f"(a) refusal {choice.message.refusal!r}")
    expect(choice.finish_reason == "stop", f"(a) finish_reason {choice.finish_reason!r}")
    expect(choice.logprobs is None, f"(a) logprobs {choice.logprobs!r}")
    u = r.usage
    expect(u is not None, "(a) no usage")
    expect(u.prompt_tokens == words("You are a test.") + words(PROMPT), f"(a) prompt_tokens {u.prompt_tokens}")
    expect(u.completion_tokens == words(DEFAULT_REPLY), f"(a) completion_tokens {u.completion_tokens}")
    expect(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"(a) total_tokens {u.total_tokens}")

    echo = client.chat.completions.create(
        model="another-model", messages=[{"role": "user", "content": "echo:  one two  three "}], max_tokens=16)
    expect(echo.choices[0].message.content == "one two  three", f"(a) echo gave {echo.choices[0].message.content!r}")
    expect(echo.model == "another-model", f"(a) echo model {echo.model!r}")

    cut = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "echo: a b c d e"}], max_completion_tokens=2)
    expect(cut.choices[0].message.content == "a b" and cut.choices[0].finish_reason == "length",
           f"(a) max_completion_tokens=2 gave {cut.choices[0].message.content!r} / {cut.choices[0].finish_reason!r}")

    parts = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [{"type": "text", "text": "echo: from parts"}]}])
    expect(parts.choices[0].message.content == "from parts", f"(a) content parts gave {parts.choices[0].message.content!r}")
    return choice.message.content


def check_stream(client, expected):
    """(b) the same prompt streamed; deltas concatenate to the reply; usage last."""
    started = time.monotonic()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are a test."}, {"role": "user", "content": PROMPT}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, arrivals = [], []
    for chunk in stream:
        expect(isinstance(chunk, openai.types.chat.ChatCompletionChunk), f"(b) not a ChatCompletionChunk: {type(chunk)}")
        chunks.append(chunk)
        arrivals.append(time.monotonic() - started)
    expect(len(chunks) >= 4, f"(b) only {len(chunks)} chunks")
    expect(all(c.object == "chat.completion.chunk" for c in chunks), "(b) a chunk's object is not chat.completion.chunk")
    expect(len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-"), "(b) chunk ids differ or lack chatcmpl-")
    expect(all(c.model == MODEL for c in chunks), "(b) a chunk's model is not the requested one")
    first = chunks[0].choices[0].delta
    expect(first.role == "assistant" and first.content == "", f"(b) first delta {first}")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect(text == expected, f"(b) streamed {text!r}, non-streamed {expected!r}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expect(finishes == ["stop"], f"(b) finish reasons {finishes}")
    last = chunks[-1]
    expect(last.choices == [], f"(b) last chunk has choices {last.choices}")
    expect(last.usage is not None, "(b) no usage in the last chunk")
    expect(all(c.usage is None for c in chunks[:-1]), "(b) usage before the last chunk")
    expect(last.usage.completion_tokens == words(expected), f"(b) completion_tokens {last.usage.completion_tokens}")
    expect(last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens, "(b) total_tokens")
    expect(arrivals[-1] - arrivals[0] > 0.02, f"(b) chunks did not arrive over time: {arrivals}")

    plain = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "echo: no usage please"}], stream=True))
    expect(all(c.usage is None for c in plain), "(b) usage sent without stream_options.include_usage")
    expect("".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "no usage please",
           "(b) echo streamed wrong")
    expect(plain[-1].choices and plain[-1].choices[0].finish_reason == "stop", "(b) without usage the last chunk is not the stop")


def check_json_schema(client):
    """(c) json_schema structured output."""
    fmt = {"type": "json_schema", "json_schema": {"name": "report", "schema": SCHEMA, "strict": True}}
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Fill in the report."}], response_format=fmt)
    content = r.choices[0].message.content
    try:
        doc = json.loads(content)
    except ValueError as err:
        raise CheckFailed(f"(c) content is not JSON: {content!r} ({err})")
    expect(isinstance(doc, dict), f"(c) content is not an object: {content!r}")
    missing = [k for k in SCHEMA["required"] if k not in doc]
    expect(not missing, f"(c) missing required keys {missing} in {content!r}")
    types = {"title": str, "count": int, "score": float, "done": bool, "mood": str, "tags": list, "owner": dict}
    for key, type_ in types.items():
        expect(isinstance(doc[key], type_) and not (type_ is int and isinstance(doc[key], bool)),
               f"(c) {key} is {doc[key]!r}, not {type_.__name__}")
    expect(doc["mood"] in ("calm", "busy"), f"(c) mood {doc['mood']!r} not in the enum")
    expect(set(doc["owner"]) >= {"name", "age"}, f"(c) owner {doc['owner']!r}")

    forced = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": 'json: {"title": 7}'}], response_format=fmt)
    expect(forced.choices[0].message.content == '{"title": 7}', f"(c) json: gave {forced.choices[0].message.content!r}")

    obj = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Answer in JSON."}], response_format={"type": "json_object"})
    expect(isinstance(json.loads(obj.choices[0].message.content), dict), "(c) json_object reply is not an object")

    check_sdk_parse(client)


def check_sdk_parse(client):
    """(c) the SDK's structured-output helper builds a strict schema from a
    pydantic model, sends it, and parses the reply back into the model."""
    try:
        from typing import List, Optional

        import pydantic
    except ImportError:
        return
    parse = getattr(client.chat.completions, "parse", None)
    if parse is None:
        parse = getattr(getattr(getattr(client, "beta", None), "chat", None), "completions", None)
        parse = getattr(parse, "parse", None)
    if parse is None:
        return

    class Owner(pydantic.BaseModel):
        name: str
        age: int

    class Report(pydantic.BaseModel):
        title: str
        count: int
        done: bool
        tags: List[str]
        owner: Owner
        note: Optional[str]

    r = parse(model=MODEL, messages=[{"role": "user", "content": "Fill in the report."}], response_format=Report)
    parsed = r.choices[0].message.parsed
    expect(isinstance(parsed, Report), f"(c) SDK parse gave {parsed!r}")
    expect(parsed.owner.name == "text" and parsed.count == 1 and parsed.done is True and parsed.tags == ["text"],
           f"(c) SDK parse gave {parsed!r}")


def check_auth(client, base_url, http_client):
    """(d) a wrong key is refused with the real error."""
    wrong = OpenAI(base_url=base_url, api_key="sk-wrong-key-0000", max_retries=0, http_client=http_client)
    try:
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    except openai.AuthenticationError as err:
        expect(err.status_code == 401, f"(d) status {err.status_code}")
        expect(err.code == "invalid_api_key", f"(d) error code {err.code!r}")
        expect(err.type == "invalid_request_error", f"(d) error type {err.type!r}")
        return
    raise CheckFailed("(d) a request with a wrong key did not raise openai.AuthenticationError")


def check_models(client):
    """(e) the model list."""
    ids = [m.id for m in client.models.list()]
    expect(ids, "(e) no models listed")
    model = client.models.retrieve(ids[0])
    expect(model.id == ids[0] and model.object == "model", f"(e) retrieve gave {model!r}")


def check_not_found(client):
    """(f) an unknown path."""
    try:
        client.with_options(max_retries=0).get("/no-such-path", cast_to=object)
    except openai.NotFoundError as err:
        expect(isinstance(err.body, dict) and "message" in err.body, f"(f) error body {err.body!r}")
        return
    raise CheckFailed("(f) an unknown path did not raise openai.NotFoundError")


def main():
    parser = argparse.ArgumentParser(description="Check a chat-completions server with the openai SDK.")
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:PORT/v1")
    parser.add_argument("--api-key", help="the key the server expects (its CHAT_API_KEY)")
    parser.add_argument("--ca", help="CA certificate (PEM) to trust for an https base URL")
    args = parser.parse_args()

    http_client = None
    if args.ca:
        # The SDK's own httpx client class, so its defaults (timeouts, limits) stay.
        http_client = openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=args.ca))
    client = OpenAI(base_url=args.base_url, api_key=args.api_key or "no-key-needed", http_client=http_client)

    try:
        reply = check_completion(client)
        check_stream(client, reply)
        check_json_schema(client)
        if args.api_key:
            check_auth(client, args.base_url, http_client)
        check_models(client)
        check_not_found(client)
    except CheckFailed as err:
        print(f"FAIL: {err}", file=sys.stderr)
        return 1
    except openai.APIConnectionError as err:
        cause = err.__cause__ or err.__context__
        print(f"FAIL: cannot reach {args.base_url}: {err}" + (f" ({cause})" if cause else ""), file=sys.stderr)
        return 1
    except openai.APIError as err:
        print(f"FAIL: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
