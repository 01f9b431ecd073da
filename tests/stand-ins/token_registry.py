"""STAND-IN for a registry that, like ghcr.io, answers anonymous pulls only with a bearer token.

Not a command: tests/test_base_image.py serves it on 127.0.0.1. The rules follow the
distribution project's token authentication spec (distribution/distribution,
docs/spec/auth/token.md, "How to authenticate" steps 1-6):
- a request without a valid token gets 401 and `WWW-Authenticate: Bearer realm="...",
  service="...",scope="repository:NAME:pull"`;
- GET realm?service=...&scope=... answers 200 with JSON `{"token": "...", "access_token": ...}`
  (both names: the spec's "Token Response Fields");
- the request retried with `Authorization: Bearer <token>` is served: a manifest the registry
  holds is 200, an unknown tag 404 (docs/spec/api.md, "Existing Manifests": HEAD .../manifests/<reference>).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse

TOKEN = "stand-in-anonymous-pull-token"


def serve(tags: dict[str, set[str]]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start the stand-in on a free port; ``tags`` maps repository -> tags it holds. Returns (server, host)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet in the tests' output
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/token":
                query = urllib.parse.parse_qs(url.query)
                if query.get("service") != ["stand-in-registry"] or not query.get("scope"):
                    self.send_response(400)
                    self.end_headers()
                    return
                body = json.dumps({"token": TOKEN, "access_token": TOKEN}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.do_HEAD()

        def do_HEAD(self):
            match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", urllib.parse.urlsplit(self.path).path)
            if not match:
                self.send_response(404)
                self.end_headers()
                return
            repository, tag = match.groups()
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}/token"
                challenge = f'Bearer realm="{realm}",service="stand-in-registry",scope="repository:{repository}:pull"'
                self.send_response(401)
                self.send_header("WWW-Authenticate", challenge)
                self.end_headers()
                return
            self.send_response(200 if tag in tags.get(repository, set()) else 404)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"
