"""What the editor's server sends besides rendered PNGs: its static files, sweep GIFs, .npy latents."""

from __future__ import annotations

import importlib.resources
import io
import tempfile

import numpy as np
from PIL import Image

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CONTENT_TYPES.update({".png": "image/png", ".svg": "image/svg+xml", ".ico": "image/x-icon"})
SWEEP_FRAMES = 9
SWEEP_FPS = 6
SWEEP_SIDE = 512  # GIF frames larger than this are shrunk (a 1024 px GIF of 16 frames is tens of MB)


def load_static_files() -> dict[str, tuple[bytes, str]]:
    """{name: (bytes, content type)} of every file shipped in jaxedit/serve/static (read once)."""
    files = {}
    for entry in importlib.resources.files("jaxedit.serve").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES and not entry.name.startswith("."):
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return files


def sweep_gif(frames: list[np.ndarray], fps: int = SWEEP_FPS) -> bytes:
    """uint8 frames [H, W, 3] -> the bytes of a looping GIF playing forward then back
    (`jaxedit.viz.video.write_video`, written in a private temporary directory and read back)."""
    from jaxedit.viz.video import write_video

    if frames[0].shape[1] > SWEEP_SIDE:
        frames = [np.asarray(Image.fromarray(f).resize((SWEEP_SIDE, SWEEP_SIDE), Image.LANCZOS)) for f in frames]
    with tempfile.TemporaryDirectory(prefix="jaxedit-serve-") as directory:
        path = write_video(f"{directory}/sweep.gif", frames, fps=fps, pingpong=True)
        return path.read_bytes()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.float32), allow_pickle=False)
    return buffer.getvalue()
