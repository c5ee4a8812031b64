"""The HTTP server of the browser editor: standard library only (`http.server.ThreadingHTTPServer`).

Why the standard library: the editor serves one local user; a thread per connection and one
render lock are all it needs, and it adds no dependency to install, audit or keep in step (an
ASGI stack would bring an event loop whose only job here would be to wait on the same lock).

Routes (JSON bodies and answers unless said otherwise; every error is `{"error": "one line"}`
with a 4xx status, or 500 for a bug, after which the server keeps serving):

    GET  /                  the page (static/index.html)
    GET  /static/<name>     a file shipped in static/ (served from memory; names only, no paths)
    GET  /api/info          attributes, defaults, resolution, preview, encoder, schematic
    POST /api/render        edit request (jaxedit.serve.state) -> PNG (the preview with "preview": true)
    POST /api/latents       edit request -> .npy of the edited W+ latent [1, num_ws, w_dim]
    POST /api/video         edit request + "attribute" -> GIF sweep of that attribute
    POST /api/paste         edit request of a photo -> PNG of the photo with the edited face pasted back
    POST /api/upload        photo bytes (needs an encoder) -> {"id", "aligned" (PNG data URL), "how"}
    POST /api/latent        .npy bytes of one W / W+ latent -> {"id"}

Request bodies need a Content-Length, checked against the route's cap before a byte is read (a
larger one is refused with 413, the body discarded unread up to `DRAIN_LIMIT`, the connection
closed). Renders of one client (`client`, `seq` in the body) supersede each other: a request
still waiting for the render lock when a newer one of its client arrives is answered 409 unrendered.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from jaxedit.errors import JaxeditError, sanitize
from jaxedit.serve import state, uploads
from jaxedit.serve.render import Renderer, encode_png
from jaxedit.serve.responses import SWEEP_FRAMES, load_static_files, npy_bytes, sweep_gif
from jaxedit.serve.state import (
    LatestOnly,
    LengthRequiredError,
    MethodNotAllowedError,
    NotFoundError,
    RequestError,
    TooLargeError,
)

MAX_JSON_BYTES = 64 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # a refused body up to this size is read and discarded so the client sees the 413
SOCKET_TIMEOUT = 30.0  # seconds a connection may sit idle mid-request
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)


class EditorServer(http.server.ThreadingHTTPServer):
    """The server: a renderer, the uploads, the static files; one thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        renderer: Renderer,
        detector: Any = None,
        log: Callable[[str], None] | None = None,
    ):
        self.renderer = renderer
        self.detector = detector
        self.uploads = uploads.UploadStore()
        self.static = load_static_files()
        self.latest = LatestOnly()
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.loopback_only = address[0] in LOOPBACK_HOSTS
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EditorHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, socket.timeout)):
            return
        self.log(f"jaxedit serve: error with {client_address[0]}: {type(error).__name__}: {error}".splitlines()[0])

    def info(self) -> dict:
        r = self.renderer
        how = None
        if r.encoder is not None:
            how = uploads.DETECTED_NOTE if self.detector is not None else uploads.ALIGNED_NOTE
        return {
            "attributes": list(r.attributes),
            "alpha_range": list(r.alpha_range),
            "alpha_limit": r.limits.alpha_limit,
            "defaults": {"truncation": r.limits.default_truncation, "layers": list(r.limits.default_layers), "seed": 0},
            "truncation_range": list(state.TRUNCATION_RANGE),
            "num_ws": r.num_ws,
            "resolution": r.resolution,
            "preview": r.use_preview,
            "preview_resolution": r.preview_resolution if r.use_preview else None,
            "encoder": r.encoder is not None,
            "alignment": how,
            "schematic": r.schematic,
            "caption": "schematic of the synthetic world, not a photograph" if r.schematic else None,
            "describe": r.describe(),
            "seed_max": state.SEED_LIMIT - 1,
            "max_upload_bytes": uploads.MAX_UPLOAD_BYTES,
            "max_latent_bytes": uploads.MAX_LATENT_BYTES,
            "sweep": {"frames": SWEEP_FRAMES, "alphas": list(r.alpha_range)},
        }


class EditorHandler(http.server.BaseHTTPRequestHandler):
    server: EditorServer
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answers to unparsable request lines still get a status line
    server_version = "jaxedit-serve"
    sys_version = ""
    timeout = SOCKET_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    error_content_type = "application/json"

    GET_ROUTES = ("/", "/index.html", "/api/info")
    POST_ROUTES = ("/api/render", "/api/latents", "/api/video", "/api/paste", "/api/upload", "/api/latent")

    # ---- plumbing ----------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # quiet: the page polls nothing, errors are logged
        pass

    def __getattr__(self, name: str):
        if name.startswith("do_"):  # PUT, DELETE, HEAD, anything: 405 rather than http.server's 501
            return self._method_not_allowed
        raise AttributeError(name)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, headers too long) as one-line JSON too."""
        self.close_connection = True
        self._send_json({"error": sanitize(message or self.responses.get(code, ("error",))[0], 200)}, code)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-response: nothing to do

    def _send_json(self, payload: dict, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _refuse(self, error: RequestError, unread: int = 0) -> None:
        """Answer a 4xx; a body left unread is discarded (up to DRAIN_LIMIT) and the connection closed."""
        if unread:
            self.close_connection = True
        headers = {"Allow": "GET, POST"} if isinstance(error, MethodNotAllowedError) else None
        self._send(error.status, json.dumps({"error": str(error)}).encode(), "application/json", headers)
        if 0 < unread <= DRAIN_LIMIT:
            self._discard(unread)

    def _discard(self, count: int) -> None:
        try:
            while count > 0:
                chunk = self.rfile.read(min(count, 1 << 16))
                if not chunk:
                    break
                count -= len(chunk)
        except (ConnectionError, TimeoutError, OSError):
            pass

    def _method_not_allowed(self) -> None:
        error = MethodNotAllowedError(f"method {sanitize(self.command, 20)} is not allowed here")
        self._refuse(error, self._declared_length_or_zero())

    def _declared_length_or_zero(self) -> int:
        text = self.headers.get("Content-Length", "") if self.headers else ""
        return int(text) if text.isdigit() and len(text) < 19 else 0

    # ---- requests ----------------------------------------------------------------------------
    def _route(self) -> str:
        target = self.path
        if not target.startswith("/"):
            raise NotFoundError("not found")
        return urllib.parse.urlsplit(target).path

    def _check_host(self) -> None:
        """Bound to loopback: only loopback Host names (no DNS-rebinding from a web page)."""
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if name not in LOOPBACK_HOSTS:
            raise RequestError("Host: this editor answers loopback addresses only (127.0.0.1, localhost)")

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise LengthRequiredError("send the body with a Content-Length (chunked uploads are not accepted)")
        text = self.headers.get("Content-Length")
        if text is None:
            raise LengthRequiredError("missing Content-Length")
        text = text.strip()
        if not text.isdigit() or len(text) > 18:
            raise RequestError(f"Content-Length {sanitize(text, 30)!r}: expected a byte count")
        length = int(text)
        if length > limit:
            raise TooLargeError(f"request body of {length:,} bytes is over the {limit:,}-byte limit")
        data = self.rfile.read(length)
        self._pending = 0
        if len(data) < length:
            raise ConnectionResetError("the client closed the connection before sending its body")
        return data

    def _json_body(self) -> Any:
        data = self._read_body(MAX_JSON_BYTES)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestError(f"request body: not JSON ({str(error).splitlines()[0][:80]})") from None
        except RecursionError:
            raise RequestError("request body: JSON nested too deeply") from None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        self._pending = self._declared_length_or_zero()  # body bytes not read yet: discarded on refusal
        try:
            self._check_host()
            route = self._route()
            if method == "GET":
                if self._pending:  # a GET with a body: answered, then the connection closes (the body unread)
                    self.close_connection = True
                self._get(route)
            elif route in self.POST_ROUTES:
                self._post(route)
            elif route in self.GET_ROUTES:
                raise MethodNotAllowedError(f"POST {sanitize(route, 80)}: use GET")
            else:
                raise NotFoundError(f"{sanitize(route, 80)}: not found")
        except RequestError as error:
            self._refuse(error, self._pending)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except JaxeditError as error:
            self._refuse(RequestError(str(error)), self._pending)
        except Exception as error:  # a bug: one line to the client and the log, the server goes on
            message = f"internal error: {type(error).__name__}: {error}".splitlines()[0][:300]
            self.server.log(f"jaxedit serve: {method} {sanitize(self.path, 80)}: {message}")
            self.close_connection = True
            self._send_json({"error": message}, 500)

    def _get(self, route: str) -> None:
        if route in ("/", "/index.html"):
            content, content_type = self.server.static["index.html"]
            self._send(200, content, content_type, {"Content-Security-Policy": PAGE_POLICY})
        elif route.startswith("/static/"):
            name = urllib.parse.unquote(route[len("/static/") :])
            if name not in self.server.static:  # a fixed set of names: no path reaches the file system
                raise NotFoundError(f"static file {sanitize(name, 60)!r}: not found")
            content, content_type = self.server.static[name]
            self._send(200, content, content_type)
        elif route == "/api/info":
            self._send_json(self.server.info())
        elif route in self.POST_ROUTES:
            raise MethodNotAllowedError(f"GET {route}: use POST")
        else:
            raise NotFoundError(f"{sanitize(route, 80)}: not found")

    def _post(self, route: str) -> None:
        server, renderer = self.server, self.server.renderer
        if route == "/api/upload":
            self._upload_photo()
            return
        if route == "/api/latent":
            data = self._read_body(uploads.MAX_LATENT_BYTES)
            ws = uploads.decode_latent(data, renderer.num_ws, renderer.w_dim)
            self._send_json({"id": server.uploads.add("latent", uploads.LatentUpload(ws))})
            return
        request = state.parse_request(self._json_body(), renderer.limits, need_attribute=route == "/api/video")
        if route == "/api/render":
            server.latest.arrive(request.client, request.seq)
            started = time.perf_counter()
            image = renderer.image(
                request, server.uploads, still_wanted=lambda: not server.latest.is_stale(request.client, request.seq)
            )
            headers = {
                "X-Render-Ms": f"{1000 * (time.perf_counter() - started):.1f}",
                "X-Preview": "1" if request.preview and renderer.use_preview else "0",
            }
            self._send(200, encode_png(image), "image/png", headers)
        elif route == "/api/latents":
            latents = renderer.latents(request, server.uploads)
            self._send(200, npy_bytes(latents), "application/octet-stream", _attachment("latents.npy"))
        elif route == "/api/video":
            frames = renderer.sweep_frames(request, server.uploads, SWEEP_FRAMES)
            self._send(200, sweep_gif(frames), "image/gif", _attachment(f"sweep_{request.attribute}.gif"))
        elif route == "/api/paste":
            if request.source.kind != "photo":
                raise RequestError("source: paste-back needs a photo source")
            from jaxedit.encoders.paste import paste_back

            item = server.uploads.get("photo", str(request.source.value))
            if item is None:
                raise NotFoundError(f"source.photo: no upload {request.source.value!r} (expired or never sent)")
            edited = renderer.image(dataclasses.replace(request, preview=False), server.uploads)
            pasted = paste_back(item.photo, edited, item.transform)
            self._send(200, encode_png(pasted), "image/png", _attachment("pasted.png"))

    def _upload_photo(self) -> None:
        renderer = self.server.renderer
        if renderer.encoder is None:
            raise RequestError("photo upload: this editor has no encoder (start it with --encoder DIR)")
        data = self._read_body(uploads.MAX_UPLOAD_BYTES)
        photo = uploads.decode_photo(data)
        aligned, transform, how = uploads.align_photo(photo, renderer.encoder.input_size, self.server.detector)
        ws = renderer.encode_photo(aligned if self.server.detector is not None else photo)
        upload_id = self.server.uploads.add("photo", uploads.PhotoUpload(ws, photo, aligned, transform, how))
        crop = "data:image/png;base64," + base64.b64encode(encode_png(aligned)).decode("ascii")
        self._send_json({"id": upload_id, "aligned": crop, "how": how, "size": list(photo.shape[:2])})


def _attachment(name: str) -> dict:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def make_server(
    renderer: Renderer,
    host: str = "127.0.0.1",
    port: int = 8000,
    detector: Any = None,
    log: Callable[[str], None] | None = None,
) -> EditorServer:
    """A bound (not yet serving) server; `port=0` picks a free port (see `server.url`)."""
    return EditorServer((host, int(port)), renderer, detector=detector, log=log)


def serve_in_thread(server: EditorServer) -> threading.Thread:
    """Serve on a daemon thread (tests, benchmarks); stop with `server.shutdown(); server.server_close()`."""
    thread = threading.Thread(target=server.serve_forever, name="jaxedit-serve", daemon=True)
    thread.start()
    return thread
