"""An origin server for the outbound HTTP tests.

    https_origin.py [--tls DIR] [--ip-san] [--record FILE]

Listens on 127.0.0.1, port chosen by the kernel, and prints the port on
stdout. With --tls it serves HTTPS with DIR/leaf.pem, a certificate for the
name `localhost` only, issued by the CA in DIR/ca.pem; both are made (with
the `cryptography` package) when DIR has no CA yet, so servers started one
after the other with the same DIR share one CA. With --ip-san the leaf names
127.0.0.1 as well (for clients that may reach loopback only by address).
--record appends each request's method, path and headers to FILE, one JSON
object a line, before answering. It exits when its stdin closes, so a test
that dies leaves no server behind.

Routes:
    /redirect?to=URL&code=302   answers `code` with Location: URL
    /big?n=BYTES                n bytes with a Content-Length
    /chunked?n=BYTES&parts=K    n bytes in K chunks (Transfer-Encoding: chunked)
    /close?n=BYTES              n bytes delimited by closing the connection
    /slow?s=SECONDS             sleeps, then echoes
    /sse?events=K               K server-sent events, 0.3 s apart, chunked
    anything else               echoes method, path, headers and body as JSON
"""

import argparse
import datetime
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_certificates(directory, ip_san=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skelm test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost")] + ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if ip_san else [])), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def write(name, data):
        path = os.path.join(directory, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)

    pem = serialization.Encoding.PEM
    write("leaf.key", leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write("leaf.pem", leaf.public_bytes(pem))
    # Last: its presence means the rest is there.
    write("ca.pem", ca.public_bytes(pem))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.server.record_path:
            with open(self.server.record_path, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": [[k, v] for k, v in self.headers.items()]}) + "\n")
        route = {
            "/redirect": self.redirect, "/big": self.big, "/chunked": self.chunked,
            "/close": self.close_delimited, "/slow": self.slow, "/sse": self.sse,
        }.get(url.path)
        if route:
            route(query, body)
        else:
            self.echo(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    def send(self, status, body, content_type="application/octet-stream", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def echo(self, body):
        answer = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        self.send(200, json.dumps(answer).encode(), "application/json")

    def redirect(self, query, body):
        self.send(int(query.get("code", "302")), b"redirecting\n", "text/plain", [("Location", query["to"])])

    def big(self, query, body):
        self.send(200, b"x" * int(query["n"]))

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def chunked(self, query, body):
        n, parts = int(query["n"]), int(query.get("parts", "4"))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        size = -(-n // parts)
        for i in range(0, n, size):
            self.write_chunk(b"c" * min(size, n - i))
        self.wfile.write(b"0\r\n\r\n")

    def close_delimited(self, query, body):
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"d" * int(query["n"]))
        self.close_connection = True

    def slow(self, query, body):
        time.sleep(float(query.get("s", "10")))
        self.echo(body)

    def sse(self, query, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(int(query.get("events", "3"))):
            if i:
                time.sleep(0.3)
            self.write_chunk(b"data: event %d\n\n" % i)
        self.wfile.write(b"0\r\n\r\n")


def exit_at_end_of_input():
    sys.stdin.buffer.read()
    os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls", metavar="DIR")
    parser.add_argument("--ip-san", action="store_true")
    parser.add_argument("--record", metavar="FILE")
    args = parser.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.record_path = args.record
    if args.tls:
        if not os.path.exists(os.path.join(args.tls, "ca.pem")):
            make_certificates(args.tls, args.ip_san)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(args.tls, "leaf.pem"), os.path.join(args.tls, "leaf.key"))
        # The handshake runs in the request's thread, not in the accept loop,
        # so a client that fails it holds up nobody else.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=exit_at_end_of_input, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
