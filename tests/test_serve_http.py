"""`jaxedit serve` over HTTP: every route's answers checked against the library (the generator, the
editors' `apply_sequence`, the encoder), every bad input refused with a one-line 4xx, and the
server still answering after each, after clients that vanish, and without compiling again."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import zlib

import jax
import numpy as np
import pytest
from PIL import Image

from jaxedit.editing import edits as edit_lib
from jaxedit.errors import ConfigError
from jaxedit.latent import load_editors
from jaxedit.serve import uploads
from jaxedit.serve.server import make_server, serve_in_thread
from jaxedit.stylegan2 import load_generator
from jaxedit.viz.grid import to_uint8
from tests.helpers.serve import PHOTO_FIXTURE, make_renderer, random_paper_editors, shared_editor_dirs

PREVIEW = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, renderer) with the encoder and a 32 px preview; serving on 127.0.0.1, a free port."""
    gen_dir, editors_dir, encoder_dir = shared_editor_dirs(tmp_path_factory)
    renderer = make_renderer(gen_dir, editors_dir, encoder_dir, preview="on", preview_resolution=PREVIEW)
    renderer.warm_up(repeats=1)
    server = make_server(renderer, "127.0.0.1", 0, log=lambda message: None)
    serve_in_thread(server)
    yield server, renderer
    server.shutdown()
    server.server_close()


def call(server, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request on a fresh connection."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_exchange(server, data: bytes) -> str:
    """Send raw bytes on a fresh connection; everything the server answers until it closes."""
    host, port = server.server_address[:2]
    answer = b""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode("latin-1")


def assert_refused(answer, status, contains=""):
    code, headers, body = answer
    assert code == status, (code, body[:300])
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message and "\n" not in message and len(message) < 400
    assert contains.lower() in message.lower(), message
    return message


def assert_alive(server):
    code, _, body = call(server, "GET", "/api/info")
    assert code == 200 and json.loads(body)["resolution"] == 64


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def render_body(**changes):
    body = {"source": {"seed": 7}, "edits": [["Smiling", 1.0], ["eyeglasses", -0.75]], "truncation": 0.8}
    body.update(changes)
    return body


# ---- what the routes answer ------------------------------------------------------------------


def test_info_names_the_editors_attributes_and_defaults(served):
    server, renderer = served
    code, headers, body = call(server, "GET", "/api/info")
    info = json.loads(body)
    assert code == 200 and headers["Cache-Control"] == "no-store"
    assert len(info["attributes"]) == 40 and info["attributes"][0] == "5_o_Clock_Shadow"
    assert info["defaults"]["layers"] == [0, 9]  # the official 0-10 range, clipped to this latent's 10 layers
    assert (info["resolution"], info["preview_resolution"], info["encoder"], info["schematic"]) == (64, 32, True, False)


def test_render_and_latents_match_the_library(served):
    """The PNG is the generator's image of the latents `/api/latents` returns, and those are the
    editors' sequential edit (`apply_sequence`) of the truncated seed latent on layers 2..7."""
    server, renderer = served
    body = render_body(layers=[2, 7])
    code, headers, png = call(server, "POST", "/api/render", body)
    assert code == 200 and headers["Content-Type"] == "image/png"
    code, headers, npy = call(server, "POST", "/api/latents", body)
    assert code == 200 and 'filename="latents.npy"' in headers["Content-Disposition"]
    latents = np.load(io.BytesIO(npy), allow_pickle=False)
    generator, editors = renderer.face, renderer.editors
    z = np.random.RandomState(7).randn(1, generator.z_dim).astype(np.float32)
    start = generator.mapping(z, 0.8)
    expected = edit_lib.apply_sequence(editors, start, [("Smiling", 1.0), ("Eyeglasses", -0.75)], layers=range(2, 8))
    assert latents.shape == (1, 10, 32) and latents.dtype == np.float32
    np.testing.assert_allclose(latents, np.asarray(expected[-1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(latents[:, [0, 1, 8, 9]], np.asarray(start)[:, [0, 1, 8, 9]], rtol=1e-6, atol=1e-6)
    image = png_array(png)
    reference = to_uint8(np.asarray(generator.synthesis(latents)))[0]
    assert image.shape == (64, 64, 3)
    assert np.abs(image.astype(int) - reference).max() <= 1  # 1/255 where the two programs round apart
    unedited = png_array(call(server, "POST", "/api/render", render_body(edits=[]))[2])
    assert np.abs(unedited.astype(int) - image).mean() > 5  # the edit shows


def test_edit_order_matters_and_preview_is_smaller(served):
    server, _ = served
    forward = call(server, "POST", "/api/latents", render_body())[2]
    backward = call(server, "POST", "/api/latents", render_body(edits=[["Eyeglasses", -0.75], ["Smiling", 1.0]]))[2]
    assert not np.allclose(np.load(io.BytesIO(forward)), np.load(io.BytesIO(backward)), atol=1e-4)
    code, headers, png = call(server, "POST", "/api/render", render_body(preview=True))
    assert code == 200 and headers["X-Preview"] == "1" and png_array(png).shape == (PREVIEW, PREVIEW, 3)


def test_sweep_video_is_a_gif_of_the_attribute(served):
    server, _ = served
    code, headers, gif = call(server, "POST", "/api/video", render_body(attribute="young"))
    assert (
        code == 200 and headers["Content-Type"] == "image/gif" and "sweep_Young.gif" in headers["Content-Disposition"]
    )
    picture = Image.open(io.BytesIO(gif))
    assert picture.size == (64, 64) and picture.n_frames == 16  # 9 frames forward, 7 back


def test_photo_upload_is_encoded_and_pasted_back(served):
    """Without a face detector the photo is taken as an aligned crop, as `jaxedit edit --image
    --aligned` takes it: the encoder's latent of the whole photo, and the edited face pasted back
    over the whole photo (`paste_back` through the whole-image transform)."""
    import base64

    from jaxedit.editing.photo import whole_image_transform
    from jaxedit.encoders.paste import paste_back

    server, renderer = served
    code, _, body = call(server, "POST", "/api/upload", PHOTO_FIXTURE.read_bytes(), {"Content-Type": "image/jpeg"})
    assert code == 200, body
    answer = json.loads(body)
    assert "taken as an aligned face crop" in answer["how"]
    photo = np.asarray(Image.open(PHOTO_FIXTURE).convert("RGB"))
    assert answer["size"] == list(photo.shape[:2])
    shown = png_array(base64.b64decode(answer["aligned"].split(",", 1)[1]))
    np.testing.assert_array_equal(shown, np.asarray(Image.fromarray(photo).resize((64, 64), Image.LANCZOS)))
    request = {"source": {"photo": answer["id"]}, "edits": [["Smiling", 1.0]], "truncation": 1.0}
    latents = np.load(io.BytesIO(call(server, "POST", "/api/latents", {**request, "edits": []})[2]))
    np.testing.assert_allclose(latents, np.asarray(renderer.encoder.encode_uint8(photo[None])), rtol=1e-5, atol=1e-5)
    edited = png_array(call(server, "POST", "/api/render", request)[2])
    code, headers, png = call(server, "POST", "/api/paste", request)
    assert code == 200 and headers["Content-Type"] == "image/png"
    pasted = png_array(png)
    np.testing.assert_array_equal(pasted, paste_back(photo, edited, whole_image_transform(photo.shape[:2], 64)))
    assert np.abs(pasted.astype(int) - photo).mean() > 5


def test_latent_upload_becomes_the_face(served):
    server, renderer = served
    ws = np.asarray(renderer.face.mapping(np.random.RandomState(3).randn(1, 32).astype(np.float32)))
    buffer = io.BytesIO()
    np.save(buffer, ws[0])  # one W+ latent [num_ws, w_dim]
    code, _, body = call(server, "POST", "/api/latent", buffer.getvalue())
    assert code == 200
    upload_id = json.loads(body)["id"]
    by_file = call(server, "POST", "/api/render", {"source": {"latent": upload_id}, "truncation": 0.5})[2]
    by_seed = call(server, "POST", "/api/render", {"source": {"seed": 3}, "truncation": 0.5})[2]
    np.testing.assert_array_equal(png_array(by_file), png_array(by_seed))


def test_w_editors_edit_a_latent_files_distinct_layers_one_by_one(tmp_path_factory):
    """Paper-kind (W) editors take an uploaded W+ latent whose layers differ and edit it layer by
    layer, as the library's `apply_sequence` (and `jaxedit edit --latent`) does; with an encoder
    they are refused as `jaxedit edit --image` refuses them: photos need W+ editors."""
    gen_dir, _, encoder_dir = shared_editor_dirs(tmp_path_factory)
    generator = load_generator(gen_dir)
    editors_dir = random_paper_editors(
        tmp_path_factory.mktemp("paper_editors"), generator.w_dim, ["Smiling", "Young"], generator
    )
    with pytest.raises(ConfigError, match="use W\\+ editors"):
        make_renderer(gen_dir, editors_dir, encoder_dir)
    server = make_server(make_renderer(gen_dir, editors_dir), "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        mapped = [
            np.asarray(generator.mapping(np.random.RandomState(s).randn(1, 32).astype(np.float32))) for s in (3, 4)
        ]
        ws = np.concatenate([mapped[0][:, :4], mapped[1][:, 4:]], axis=1)[0]  # distinct layers
        code, _, body = call(server, "POST", "/api/latent", _npy(ws))
        assert code == 200, body
        steps = [["Smiling", 1.0], ["Young", -0.5]]
        body = {"source": {"latent": json.loads(body)["id"]}, "edits": steps, "truncation": 1.0}
        code, _, npy = call(server, "POST", "/api/latents", body)
        assert code == 200, npy
        latents = np.load(io.BytesIO(npy), allow_pickle=False)
        expected = edit_lib.apply_sequence(load_editors(editors_dir), ws[None], [tuple(s) for s in steps])[-1]
        np.testing.assert_allclose(latents, np.asarray(expected), rtol=1e-5, atol=1e-5)
        moves = latents[0] - ws
        assert np.abs(moves).max(axis=1).min() > 1e-3  # every layer edited
        assert not np.allclose(moves[0], moves[-1], atol=1e-3)  # each by its own move
    finally:
        server.shutdown()
        server.server_close()


def test_static_files_and_page(served):
    server, _ = served
    code, headers, page = call(server, "GET", "/")
    assert code == 200 and b'src="/static/app.js"' in page and "script-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        code, headers, _ = call(server, "GET", f"/static/{name}")
        assert code == 200 and headers["Content-Type"].startswith(kind)
    assert b"http://" not in page and b"https://" not in page  # no CDN: the page works offline


# ---- bad input: one-line 4xx, and the server answers afterwards ---------------------------------

BAD_RENDER_BODIES = {
    "non-numeric alpha": (render_body(edits=[["Smiling", "abc"]]), 400, "expected a number"),
    "alpha true": (render_body(edits=[["Smiling", True]]), 400, "expected a number"),
    "alpha 1e308": (render_body(edits=[["Smiling", 1e308]]), 400, "outside"),
    "huge integer alpha": (render_body(edits=[["Smiling", 10**400]]), 400, "finite"),
    "unknown attribute": (render_body(edits=[["Smilling", 1.0]]), 400, "no such attribute"),
    "attribute twice": (render_body(edits=[["Smiling", 1.0], ["smiling", 0.5]]), 400, "twice"),
    "edit not a pair": (render_body(edits=[["Smiling"]]), 400, "[attribute, alpha]"),
    "edits not a list": (render_body(edits="Smiling=1"), 400, "list"),
    "huge seed": (render_body(source={"seed": 10**30}), 400, "outside 0..4294967295"),
    "negative seed": (render_body(source={"seed": -1}), 400, "outside"),
    "seed as text": (render_body(source={"seed": "7"}), 400, "integer"),
    "fractional seed": (render_body(source={"seed": 1.5}), 400, "integer"),
    "two sources": (render_body(source={"seed": 1, "latent": "abcdefgh"}), 400, "source"),
    "unknown source": (render_body(source={"url": "file:///etc/passwd"}), 400, "unknown kind"),
    "path as upload id": (render_body(source={"latent": "../../etc/passwd"}), 400, "upload id"),
    "unknown upload": (render_body(source={"photo": "abcdefghijkl"}), 404, "no upload"),
    "truncation 1e308": (render_body(truncation=1e308), 400, "outside"),
    "layers reversed": (render_body(layers=[5, 2]), 400, "after"),
    "layer out of range": (render_body(layers=[0, 10]), 400, "outside 0..9"),
    "preview not boolean": (render_body(preview="yes"), 400, "true or false"),
    "unknown field": (render_body(path="/etc/passwd"), 400, "unknown field"),
    "no source": ({"edits": []}, 400, "missing 'source'"),
    "not an object": ([1, 2, 3], 400, "JSON object"),
    "bad client id": (render_body(client="../x", seq=1), 400, "client"),
}


@pytest.mark.parametrize("case", list(BAD_RENDER_BODIES))
def test_bad_render_requests_are_refused_in_one_line(served, case):
    server, _ = served
    body, status, message = BAD_RENDER_BODIES[case]
    for route in ("/api/render", "/api/latents"):
        assert_refused(call(server, "POST", route, body), status, message)
    assert_alive(server)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"source": {"seed": 1}, "edits": [["Smiling", NaN]]}', "finite"),
        (b'{"source": {"seed": 1}, "edits": [["Smiling", Infinity]]}', "finite"),
        (b'{"source": {"seed": 1}, "edits": [["Smiling", -1e999]]}', "finite"),
        (b'{"source": {"seed": 1}, "truncation": NaN}', "finite"),
        (b"not json at all", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 60000, "nested"),
    ],
)
def test_non_finite_and_malformed_json_is_refused(served, raw, message):
    server, _ = served
    assert_refused(call(server, "POST", "/api/render", raw, {"Content-Type": "application/json"}), 400, message)
    assert_alive(server)


def test_video_needs_a_known_attribute(served):
    server, _ = served
    assert_refused(call(server, "POST", "/api/video", render_body()), 400, "attribute")
    assert_refused(call(server, "POST", "/api/video", render_body(attribute="Wings")), 400, "no such attribute")
    assert_alive(server)


def test_paste_needs_a_photo(served):
    server, _ = served
    assert_refused(call(server, "POST", "/api/paste", render_body()), 400, "photo")


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG declaring width x height pixels, all zero: a few kB of zlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(served):
    server, _ = served
    bomb = _bomb_png(30000, 30000)  # 900 megapixels declared
    assert len(bomb) < 200_000
    assert_refused(call(server, "POST", "/api/upload", bomb, {"Content-Type": "image/png"}), 413, "pixel")
    just_over = _bomb_png(8000, 5001)  # above our 40-megapixel cap, below Pillow's own guard
    assert_refused(call(server, "POST", "/api/upload", just_over), 413, "40,000,000")
    assert_alive(server)


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"%PDF-1.4 this is not an image", 415, "not an image"),
        (b"", 400, "empty"),
        (PHOTO_FIXTURE.read_bytes()[:2000], 415, "damaged"),  # a JPEG cut short
    ],
)
def test_non_images_are_refused(served, data, status, message):
    server, _ = served
    assert_refused(call(server, "POST", "/api/upload", data, {"Content-Type": "image/jpeg"}), status, message)
    assert_alive(server)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, status, message",
    [
        (_npy(np.zeros((3, 10, 32), np.float32)), 400, "expected W [32]"),
        (_npy(np.zeros((10, 32), np.int64)), 400, "floating"),
        (_npy(np.full((10, 32), np.nan, np.float32)), 400, "non-finite"),
        (_npy(np.array([{"a": 1}], dtype=object)), 415, "no pickles"),
        (b"\x93NUMPY garbage", 415, "not a .npy"),
        (b"x" * (uploads.MAX_LATENT_BYTES + 1), 413, "limit"),
    ],
)
def test_bad_latent_files_are_refused(served, data, status, message):
    server, _ = served
    assert_refused(call(server, "POST", "/api/latent", data), status, message)
    assert_alive(server)


def test_a_50_mb_upload_is_refused_from_its_content_length(served):
    """The 413 arrives after the headers alone: the body is never read into memory."""
    server, _ = served
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(50 * 1024 * 1024))
    connection.endheaders()  # no body sent
    response = connection.getresponse()
    assert response.status == 413
    assert "over the 20,971,520-byte limit" in json.loads(response.read())["error"]
    connection.close()
    # A client that sends the whole body anyway still gets the one-line 413 (the body is discarded).
    request = urllib.request.Request(f"{server.url}api/upload", data=b"\0" * (50 * 1024 * 1024), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413 and "limit" in json.loads(refused.value.read())["error"]
    assert_alive(server)


def test_missing_or_bad_content_length(served):
    server, _ = served
    for headers, status in (
        ("Transfer-Encoding: chunked\r\n", 411),
        ("", 411),
        ("Content-Length: -5\r\n", 400),
        ("Content-Length: 1e9\r\n", 400),
    ):
        request = f"POST /api/render HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
        answer = raw_exchange(server, request.encode())
        assert answer.startswith(f"HTTP/1.1 {status} "), answer[:80]
        assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"]
    assert_alive(server)


def test_a_get_with_a_body_is_answered_and_the_connection_closed(served):
    server, _ = served
    answer = raw_exchange(server, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
    head = answer.split("\r\n\r\n", 1)[0]  # the server closed the connection after its answer
    assert head.startswith("HTTP/1.1 200 ") and "Connection: close" in head


TRAVERSALS = [
    "/static/../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/app.js%00.png",
    "/static/",
    "/static/.",
    "/static/../server.py",
    "/static/..\\..\\server.py",
    "/../../../../etc/passwd",
    "/etc/passwd",
    "//etc/passwd",
    "/static/%252e%252e/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_finds_nothing(served, path):
    server, _ = served
    code, headers, body = call(server, "GET", path)
    assert 400 <= code < 500 and b"root:" not in body and b"import" not in body
    assert_refused((code, headers, body), code)
    assert_alive(server)


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/api/render", 405),
        ("POST", "/api/info", 405),
        ("POST", "/", 405),
        ("DELETE", "/api/info", 405),
        ("PUT", "/api/upload", 405),
        ("HEAD", "/", 405),
        ("GET", "/api/nothing", 404),
        ("POST", "/api/nothing", 404),
    ],
)
def test_unknown_routes_and_methods(served, method, path, status):
    server, _ = served
    code, headers, body = call(server, method, path, b"{}" if method in ("POST", "PUT") else None)
    assert code == status
    if method != "HEAD":
        assert_refused((code, headers, body), status)
    assert_alive(server)


def test_foreign_host_header_is_refused(served):
    """Bound to loopback, the server answers loopback Host names only (a web page cannot rebind DNS to it)."""
    server, _ = served
    assert_refused(call(server, "GET", "/api/info", headers={"Host": "evil.example:8000"}), 400, "loopback")
    assert call(server, "GET", "/api/info", headers={"Host": f"localhost:{server.server_address[1]}"})[0] == 200


def test_garbage_request_line_gets_one_line_json(served):
    server, _ = served
    too_long = b"GET /" + b"a" * (65537 - 5)  # exactly what the server reads before refusing: nothing left unread
    for garbage in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", too_long):
        answer = raw_exchange(server, garbage)
        assert answer.startswith("HTTP/1.") and " 4" in answer.split("\r\n")[0], answer[:80]
        assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"]
    assert_alive(server)


def test_photo_upload_without_encoder_is_refused(tmp_path_factory):
    gen_dir, editors_dir, _ = shared_editor_dirs(tmp_path_factory)
    server = make_server(make_renderer(gen_dir, editors_dir), "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        assert_refused(call(server, "POST", "/api/upload", PHOTO_FIXTURE.read_bytes()), 400, "no encoder")
        assert json.loads(call(server, "GET", "/api/info")[2])["encoder"] is False
    finally:
        server.shutdown()
        server.server_close()


# ---- clients that vanish, superseded requests, no recompilation -----------------------------------


def test_clients_that_disconnect_do_not_stop_the_server(served):
    server, _ = served
    host, port = server.server_address[:2]
    body = json.dumps(render_body(attribute="Smiling")).encode()
    head = f"POST /api/video HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection((host, port)) as sock:  # gone before the answer
        sock.sendall(head + body)
    with socket.create_connection((host, port)) as sock:  # gone mid-response, with a reset
        sock.sendall(head + body)
        sock.recv(100)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with socket.create_connection((host, port)) as sock:  # gone mid-body
        sock.sendall(head[:-4] + b"\r\n\r\n" + body[:10])
    with socket.create_connection((host, port)) as sock:  # gone mid-headers
        sock.sendall(b"POST /api/render HTTP/1.1\r\nContent-")
    time.sleep(0.5)
    assert_alive(server)
    assert call(server, "POST", "/api/render", render_body())[0] == 200


def test_a_newer_request_of_a_client_supersedes_a_queued_one(served):
    server, renderer = served
    answers = {}

    def send(seq):
        answers[seq] = call(server, "POST", "/api/render", render_body(client="tab1", seq=seq))

    with renderer.lock:  # the renderer is busy: both requests queue
        first = threading.Thread(target=send, args=(1,))
        first.start()
        while not server.latest.is_stale("tab1", 0):
            time.sleep(0.01)
        second = threading.Thread(target=send, args=(2,))
        second.start()
        while not server.latest.is_stale("tab1", 1):
            time.sleep(0.01)
    first.join()
    second.join()
    assert_refused(answers[1], 409, "superseded")
    assert answers[2][0] == 200
    assert call(server, "POST", "/api/render", render_body(client="tab2", seq=1))[0] == 200  # other clients unaffected


def test_slider_moves_never_compile(served):
    """After warm-up, 30 different requests (attributes, order, alphas, truncation, layers, preview,
    sources, latents) run without a single XLA compilation."""
    server, _ = served
    compiled = []
    listening = [True]

    def listener(event, duration, **kwargs):
        if listening[0] and event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    rng = np.random.default_rng(0)
    names = ["Smiling", "Young", "Eyeglasses", "Bald", "Male", "Goatee"]
    try:
        for k in range(30):
            steps = [[str(n), round(float(rng.uniform(-1.5, 1.5)), 2)] for n in rng.permutation(names)[: k % 6 + 1]]
            first = int(rng.integers(0, 5))
            body = {
                "source": {"seed": int(rng.integers(0, 2**32))},
                "edits": steps,
                "truncation": round(float(rng.uniform(0.3, 1.0)), 2),
                "layers": [first, int(rng.integers(first, 10))],
                "preview": bool(k % 2),
            }
            route = "/api/latents" if k % 5 == 4 else "/api/render"
            assert call(server, "POST", route, body)[0] == 200
    finally:
        listening[0] = False
    assert compiled == []
