#!/usr/bin/env python3
"""Loopback web servers for the egress tests (tests/e2e/egress.rs). Nothing here listens beyond
127.0.0.1: sandboxes reach these servers only through the host's egress proxy and its test-only
resolver override (`serve --egress-test-resolve NAME:PORT=127.0.0.1:PORT`).

    server.py DIR

Builds its fixtures under DIR: a test CA and a server certificate it signs (for the names in
NAMES), a simple package index with one tiny valid wheel (`tinypkg`), and a bare git repository
served over git's dumb HTTP protocol. Then serves the same handler over HTTP and HTTPS and prints
one JSON line {"http": PORT, "https": PORT, "ca": PATH} once both listen.

Routes (any host name):
  /                 an HTML page titled "Egress test: HOST", saying "Hello from HOST over SCHEME"
  /hello            text "hello from HOST over SCHEME"
  /redirect?to=URL  302 to URL
  /big?n=N          N bytes of "x"
  /slow             "tick N" lines, one every 0.1 s, until the client goes
  /_seen            (for the test itself) JSON list of "SCHEME://HOST/PATH" requests served so far
  anything else     a static file under DIR/www (simple/, packages/, repo.git/)
"""
import base64
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile

NAMES = ["allowed.test", "*.wild.test", "pypi.test", "other.test", "evil-allowed.test",
         "wild.test.evil.test"]
SEEN = []
SEEN_LOCK = threading.Lock()


def run(*cmd, cwd=None):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certificates(d):
    """A test CA and a server certificate for NAMES signed by it; returns (ca, cert, key)."""
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    cert, key, csr = (os.path.join(d, n) for n in ("server.pem", "server.key", "server.csr"))
    ext = os.path.join(d, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=agent-runtime e2e egress test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=allowed.test")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in NAMES) + "\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


def make_index(www):
    """/simple/tinypkg/ listing one valid pure-Python wheel under /packages/."""
    files = {
        "tinypkg/__init__.py": b'VALUE = "tinypkg imported"\n',
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: egress-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "tinypkg-1.0.dist-info/RECORD,,\n"
    files["tinypkg-1.0.dist-info/RECORD"] = record.encode()
    wheel = "tinypkg-1.0-py3-none-any.whl"
    os.makedirs(os.path.join(www, "packages"))
    path = os.path.join(www, "packages", wheel)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    os.makedirs(os.path.join(www, "simple", "tinypkg"))
    with open(os.path.join(www, "simple", "index.html"), "w") as f:
        f.write('<!doctype html><html><body><a href="tinypkg/">tinypkg</a></body></html>\n')
    with open(os.path.join(www, "simple", "tinypkg", "index.html"), "w") as f:
        f.write(f'<!doctype html><html><body><a href="/packages/{wheel}#sha256={sha}">{wheel}</a>'
                "</body></html>\n")


def make_repo(d, www):
    """A bare repository with one commit (README: "cloned through the egress proxy"), prepared
    for the dumb HTTP protocol (`git update-server-info`), at /repo.git."""
    work, bare = os.path.join(d, "work"), os.path.join(www, "repo.git")
    who = ["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"]
    run("git", "init", "-q", "-b", "main", work)
    with open(os.path.join(work, "README"), "w") as f:
        f.write("cloned through the egress proxy\n")
    run("git", "add", "README", cwd=work)
    run("git", *who, "commit", "-q", "-m", "first", cwd=work)
    run("git", "init", "-q", "--bare", "-b", "main", bare)
    run("git", "push", "-q", bare, "main", cwd=work)
    run("git", "update-server-info", cwd=bare)


class Handler(http.server.SimpleHTTPRequestHandler):
    scheme = "http"

    def log_message(self, fmt, *args):
        pass

    def host(self):
        h = self.headers.get("Host") or ""
        return h.split("]")[0] + "]" if h.startswith("[") else h.rsplit(":", 1)[0]

    def send_text(self, code, text, ctype="text/plain; charset=utf-8", extra=()):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        host = self.host()
        if url.path == "/_seen":
            with SEEN_LOCK:
                return self.send_text(200, json.dumps(SEEN), "application/json")
        with SEEN_LOCK:
            SEEN.append(f"{self.scheme}://{host}{url.path}")
        if url.path == "/":
            page = (f"<!doctype html><html><head><title>Egress test: {host}</title></head>"
                    f"<body><h1>Hello from {host} over {self.scheme}</h1>"
                    '<a href="/hello">hello</a></body></html>')
            return self.send_text(200, page, "text/html; charset=utf-8")
        if url.path == "/hello":
            return self.send_text(200, f"hello from {host} over {self.scheme}\n")
        if url.path == "/redirect":
            to = query.get("to", ["/"])[0]
            return self.send_text(302, f"see {to}\n", extra=[("Location", to)])
        if url.path == "/big":
            n = int(query.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while n > 0:
                    self.wfile.write(chunk[:n])
                    n -= min(n, len(chunk))
            except OSError:
                pass
            return None
        if url.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for i in range(6000):
                    self.wfile.write(f"tick {i}\n".encode())
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
            return None
        return super().do_GET()


class TlsHandler(Handler):
    scheme = "https"
    context = None

    def setup(self):
        # The handshake runs in this connection's thread, never in the accepting one.
        self.request = self.context.wrap_socket(self.request, server_side=True)
        super().setup()



class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that hangs up or refuses our certificate is the test's business, not noise.
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)


def main():
    d = os.path.abspath(sys.argv[1])
    www = os.path.join(d, "www")
    os.makedirs(www, exist_ok=True)
    ca, cert, key = make_certificates(d)
    make_index(www)
    make_repo(d, www)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    TlsHandler.context = ctx

    def serve(handler):
        srv = Server(("127.0.0.1", 0), lambda *a: handler(*a, directory=www))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv.server_address[1]

    ports = {"http": serve(Handler), "https": serve(TlsHandler), "ca": ca}
    print(json.dumps(ports), flush=True)
    # Until the test closes our stdin (or dies).
    sys.stdin.read()


if __name__ == "__main__":
    main()
