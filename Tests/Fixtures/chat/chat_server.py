#!/usr/bin/env python3
"""A local server that speaks the OpenAI chat-completions protocol.

    python3 chat_server.py [--tls-cert CERT --tls-key KEY] [--record FILE]

Binds 127.0.0.1 on a free port, prints `PORT <n>` as its first line of stdout,
and serves until it is killed. Python 3 standard library only.

Endpoints (the shapes are those of the real API):
  POST /v1/chat/completions   a `chat.completion`, or with `stream: true` a
                              text/event-stream of `chat.completion.chunk`s
                              ending in `data: [DONE]`
  GET  /v1/models             a `list` of `model` objects
  GET  /v1/models/{id}        one `model`
Anything else is a 404 with the API's error JSON.

Replies are deterministic. From the last user message:
  `echo: X`   -> X (stripped)
  `json: X`   -> X exactly as sent after the prefix (stripped), whatever the
                 response_format: lets a test force a reply that breaks a schema
  otherwise, with response_format json_schema -> a JSON document generated to
                 satisfy the schema; with json_object -> {"message": "Hello
                 from the stand-in."}; else -> `Hello from the stand-in.`
Tokens are whitespace-separated words (at least 1). A max_completion_tokens
(or max_tokens) below the reply's word count cuts the reply to that many words
with finish_reason "length", as the real API does.

Environment:
  CHAT_API_KEY=K        requests without `Authorization: Bearer K` get a 401
  CHAT_FAIL_FIRST=N     the first N requests fail with CHAT_FAIL_STATUS
  CHAT_FAIL_STATUS=S    429 (default; sends `retry-after: 0`), 500 or 503
  CHAT_MODELS=a,b       the ids GET /v1/models lists (default stand-in-model)
  CHAT_STREAM_DELAY_MS  pause between streamed chunks (default 20)

--record FILE appends one JSON line per request, written before the response
is sent: {"method", "path", "headers" (lowercased names), "body" (parsed JSON,
or null), "status"}; a body that is not JSON also gets "body_raw".
"""

import argparse
import json
import os
import re
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_REPLY = "Hello from the stand-in."
CREATED = 1700000000  # a fixed `created` for the model list

_fail_lock = threading.Lock()
_fail_remaining = 0
_record_lock = threading.Lock()


class ApiError(Exception):
    """An error answered with the real API's error JSON."""

    def __init__(self, status, message, type_="invalid_request_error", param=None, code=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# --- replies -----------------------------------------------------------------


def words(text):
    return len(text.split())


def token_count(text):
    return max(1, words(text))


def content_text(content):
    """The text of a message's content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def schema_value(schema, root, depth=0):
    """A value that satisfies a JSON schema (the subset structured outputs use)."""
    if depth > 32 or not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = root
        if ref.startswith("#"):
            for key in ref[1:].strip("/").split("/"):
                if not key:
                    continue
                key = key.replace("~1", "/").replace("~0", "~")
                target = target.get(key) if isinstance(target, dict) else None
        return schema_value(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return schema_value((non_null or options)[0], root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged = {}
        for part in all_of:
            value = schema_value(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
            elif not merged:
                return value
        return merged

    type_ = schema.get("type")
    if isinstance(type_, list):
        non_null = [t for t in type_ if t != "null"]
        type_ = non_null[0] if non_null else "null"
    if type_ is None:
        if "properties" in schema:
            type_ = "object"
        elif "items" in schema:
            type_ = "array"

    if type_ == "object":
        props = schema.get("properties") or {}
        names = list(props.keys())
        for name in schema.get("required") or []:
            if name not in props:
                names.append(name)
        out = {}
        for name in names:
            out[name] = schema_value(props.get(name, {"type": "string"}), root, depth + 1)
        return out
    if type_ == "array":
        items = schema.get("items")
        if isinstance(schema.get("prefixItems"), list):
            return [schema_value(s, root, depth + 1) for s in schema["prefixItems"]]
        count = max(1, int(schema.get("minItems", 1) or 1))
        return [schema_value(items if isinstance(items, dict) else {"type": "string"}, root, depth + 1)
                for _ in range(count)]
    if type_ == "string":
        fmt = schema.get("format")
        formatted = {
            "date-time": "2024-01-01T00:00:00Z",
            "date": "2024-01-01",
            "time": "00:00:00",
            "email": "user@example.com",
            "uri": "https://example.com/",
            "uuid": "00000000-0000-4000-8000-000000000000",
            "ipv4": "127.0.0.1",
            "ipv6": "::1",
            "hostname": "example.com",
            "duration": "P1D",
        }.get(fmt)
        if formatted is not None:
            return formatted
        text = "text"
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and min_len > len(text):
            text = text + "x" * (min_len - len(text))
        return text
    if type_ == "integer":
        return int(clamp(1, schema))
    if type_ == "number":
        return clamp(1.5, schema)
    if type_ == "boolean":
        return True
    if type_ == "null":
        return None
    return "text"


def clamp(value, schema):
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(low, (int, float)) and value < low:
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if isinstance(high, (int, float)) and value > high:
        value = high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    return value


def reply_text(req):
    messages = req["messages"]
    last_user = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            last_user = content_text(message.get("content"))
            break
    prompt = last_user.strip()
    if prompt.startswith("echo:"):
        return prompt[len("echo:"):].strip()
    if prompt.startswith("json:"):
        return prompt[len("json:"):].strip()
    fmt = req.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            schema = spec.get("schema") or {"type": "object"}
            return json.dumps(schema_value(schema, schema))
        if fmt.get("type") == "json_object":
            return json.dumps({"message": DEFAULT_REPLY})
    return DEFAULT_REPLY


def split_words(text):
    """Pieces of one word each, whitespace kept, that concatenate to `text`."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)):]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces = [rest]
    return pieces


def validate(req):
    """The real API's answers to the request errors a client is likely to make."""
    if not isinstance(req, dict):
        raise ApiError(400, "Invalid type for request body: expected an object.")
    if not req.get("model"):
        raise ApiError(400, "you must provide a model parameter", code=None)
    if not isinstance(req.get("model"), str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", param="model", code="invalid_type")
    messages = req.get("messages")
    if messages is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", param="messages",
                       code="missing_required_parameter")
    if not isinstance(messages, list):
        raise ApiError(400, "Invalid type for 'messages': expected an array.", param="messages",
                       code="invalid_type")
    if not messages:
        raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                            "but got an empty array instead.", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ApiError(400, f"Missing required parameter: 'messages[{i}].role'.",
                           param=f"messages[{i}].role", code="missing_required_parameter")
        if message["role"] not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise ApiError(400, f"Invalid value: '{message['role']}'. Supported values are: 'system', "
                                "'assistant', 'user', 'function', 'tool', and 'developer'.",
                           param=f"messages[{i}].role", code="invalid_value")
    temperature = req.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                                    or not 0 <= temperature <= 2):
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 2:
            raise ApiError(400, f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                                f"but got {temperature} instead.", param="temperature", code="decimal_above_max_value")
        raise ApiError(400, f"Invalid 'temperature': expected a number between 0 and 2, but got {temperature!r} "
                            "instead.", param="temperature", code="invalid_value")
    for key in ("max_tokens", "max_completion_tokens"):
        value = req.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ApiError(400, f"Invalid '{key}': integer below minimum value. Expected a value >= 1, "
                                f"but got {value} instead.", param=key, code="integer_below_min_value")
    fmt = req.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise ApiError(400, "Invalid value for 'response_format.type': expected one of 'text', "
                                "'json_object' or 'json_schema'.", param="response_format.type",
                           code="invalid_value")
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict):
                raise ApiError(400, "Missing required parameter: 'response_format.json_schema'.",
                               param="response_format.json_schema", code="missing_required_parameter")
            if not spec.get("name"):
                raise ApiError(400, "Missing required parameter: 'response_format.json_schema.name'.",
                               param="response_format.json_schema.name", code="missing_required_parameter")
        if fmt["type"] == "json_object":
            mentioned = any("json" in content_text(m.get("content")).lower() for m in messages)
            if not mentioned:
                raise ApiError(400, "'messages' must contain the word 'json' in some form, to use "
                                    "'response_format' of type 'json_object'.", param="messages", code=None)
    options = req.get("stream_options")
    if options is not None and not req.get("stream"):
        raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                       param="stream_options", code=None)


# --- HTTP ----------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def version_string(self):
        return "chat-stand-in"

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in the request's own thread

    def log_message(self, fmt, *args):
        sys.stderr.write("chat_server: %s\n" % (fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    # -- plumbing

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def record(self, raw, parsed, parse_ok, status):
        path = self.server.record_path
        if not path:
            return
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = headers[key] + ", " + value if key in headers else value
        entry = {"method": self.command, "path": self.path, "headers": headers,
                 "body": parsed if parse_ok else None, "status": status}
        if raw and not parse_ok:
            entry["body_raw"] = raw.decode("utf-8", "replace")
        with _record_lock:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def send_json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routing

    def dispatch(self, method):
        raw = b""
        parsed, parse_ok = None, True
        try:
            raw = self.read_body()
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parse_ok = False
            try:
                status, respond = self.route(method, parsed, parse_ok, raw)
            except ApiError as err:
                self.record(raw, parsed, parse_ok, err.status)
                self.send_json(err.status, err.body(), err.headers)
                return
            self.record(raw, parsed, parse_ok, status)
            respond()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # a bug here: answer as the API would, and say so on stderr
            sys.stderr.write(f"chat_server: internal error: {err!r}\n")
            self.close_connection = True
            try:
                self.send_json(500, ApiError(500, "The server had an error while processing your request.",
                                             type_="server_error").body())
            except OSError:
                pass

    def route(self, method, parsed, parse_ok, raw):
        """Checks the request and returns (status, a function that answers it)."""
        self.check_auth()
        self.maybe_fail()
        path = self.path.split("?", 1)[0]
        if method == "POST" and path == "/v1/chat/completions":
            if not parse_ok:
                raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                                    "payload, but what was sent was not valid JSON. If you have trouble figuring "
                                    "out how to fix this, please contact us through our help center at "
                                    "help.openai.com.)")
            if not raw:
                raise ApiError(400, "you must provide a model parameter")
            validate(parsed)
            if parsed.get("stream"):
                return 200, lambda: self.stream_completion(parsed)
            return 200, lambda: self.send_json(200, self.completion(parsed))
        if method == "GET" and path == "/v1/models":
            return 200, lambda: self.send_json(200, {"object": "list", "data": [model_object(m) for m in models()]})
        if method == "GET" and path.startswith("/v1/models/"):
            model_id = path[len("/v1/models/"):]
            if model_id in models():
                return 200, lambda: self.send_json(200, model_object(model_id))
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        raise ApiError(404, f"Invalid URL ({method} {path})")

    def check_auth(self):
        key = os.environ.get("CHAT_API_KEY")
        if not key:
            return
        given = self.headers.get("Authorization") or ""
        if given == "Bearer " + key:
            return
        if not given.startswith("Bearer ") or not given[len("Bearer "):].strip():
            message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            shown = given[len("Bearer "):]
            shown = shown[:3] + "*" * max(0, len(shown) - 7) + shown[-4:] if len(shown) > 7 else "****"
            message = (f"Incorrect API key provided: {shown}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
        raise ApiError(401, message, code="invalid_api_key")

    def maybe_fail(self):
        global _fail_remaining
        with _fail_lock:
            if _fail_remaining <= 0:
                return
            _fail_remaining -= 1
        status = self.server.fail_status
        if status == 429:
            raise ApiError(429, "Rate limit reached for requests. Limit: 3, Used: 3, Requested: 1. "
                                "Please try again in 0s.", type_="requests", code="rate_limit_exceeded",
                           headers={"retry-after": "0"})
        if status == 503:
            raise ApiError(503, "The engine is currently overloaded, please try again later.",
                           type_="server_error", code=None)
        raise ApiError(status, "The server had an error while processing your request. Sorry about that!",
                       type_="server_error", code=None)

    # -- completions

    def reply(self, req):
        text = reply_text(req)
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        pieces = split_words(text)
        if limit is not None and words(text) > limit:
            return "".join(pieces[:limit]), "length"
        return text, "stop"

    def usage(self, req, text):
        prompt = sum(words(content_text(m.get("content"))) for m in req["messages"])
        prompt_tokens = max(1, prompt)
        completion_tokens = token_count(text)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def completion(self, req):
        text, finish = self.reply(req)
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": self.usage(req, text),
            "service_tier": "default",
            "system_fingerprint": "fp_standin",
        }

    def stream_completion(self, req):
        text, finish = self.reply(req)
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": req["model"],
                "service_tier": "default", "system_fingerprint": "fp_standin"}
        delay = self.server.stream_delay

        def chunk(delta, finish_reason=None):
            obj = dict(base)
            obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            if include_usage:
                obj["usage"] = None
            return obj

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in split_words(text)]
        events.append(chunk({}, finish))
        if include_usage:
            last = dict(base)
            last["choices"] = []
            last["usage"] = self.usage(req, text)
            events.append(last)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        self.end_headers()
        self.wfile.flush()
        for i, event in enumerate(events):
            if i:
                time.sleep(delay)
            self.send_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
        time.sleep(delay)
        self.send_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def models():
    names = [m.strip() for m in os.environ.get("CHAT_MODELS", "stand-in-model").split(",") if m.strip()]
    return names or ["stand-in-model"]


def model_object(model_id):
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "stand-in"}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    record_path = None
    fail_status = 429
    stream_delay = 0.02

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if isinstance(err, (ssl.SSLError, ConnectionError, TimeoutError, OSError)):
            sys.stderr.write(f"chat_server: connection from {client_address[0]} dropped: {err}\n")
            return
        super().handle_error(request, client_address)


def main():
    global _fail_remaining
    parser = argparse.ArgumentParser(description="A local OpenAI chat-completions server for tests.")
    parser.add_argument("--tls-cert", help="PEM certificate (chain); serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--record", help="append one JSON line per request to this file")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    try:
        _fail_remaining = int(os.environ.get("CHAT_FAIL_FIRST") or 0)
        fail_status = int(os.environ.get("CHAT_FAIL_STATUS") or 429)
        delay_ms = float(os.environ.get("CHAT_STREAM_DELAY_MS") or 20)
    except ValueError as err:
        parser.error(f"bad environment value: {err}")

    server = Server(("127.0.0.1", args.port), Handler)
    server.record_path = args.record
    server.fail_status = fail_status
    server.stream_delay = delay_ms / 1000.0
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)

    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
