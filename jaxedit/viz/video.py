"""Videos of frame sequences (edit sweeps), streamed: GIF and WebP with Pillow, MP4 with PyAV.

`write_video(path, frames, fps)` takes the frames one at a time and writes each to the output
before asking for the next, so memory stays flat in the number of frames:

- GIF: each frame is quantised to its own 256-colour palette (a local colour table) and appended
  as one GIF image block; the frame delay is stored in hundredths of a second (so 30 fps plays as
  1/0.03 s = 33.3 fps).
- WebP: each frame is encoded as a still WebP by Pillow and appended as one ANMF chunk of an
  animated WebP (the RIFF size is patched at the end). `quality` 0..100 (lossy) or `lossless`.
- MP4 (H.264, yuv420p; odd widths/heights are padded by one edge pixel): needs PyAV, the optional
  extra `pip install 'jaxedit[video]'`; PyAV is imported only when an MP4 is written.

Pillow's own `save(save_all=True, append_images=...)` is not used: it collects every frame in
memory before writing (GIF keeps all quantised frames, WebP calls `list()` on the frames).

Pingpong (`pingpong=True`) plays the frames forward, then backward without repeating the end
frames: 0, 1, ..., N-1, N-2, ..., 1. The backward half needs frames 1..N-2 again. Given a callable
`frames(i)` and `count`, they are rendered again (memory stays flat); given an iterable, they are
kept: GIF and WebP keep each frame's encoded bytes (a few KB at 256 px), MP4 keeps the raw frames
(N-2 times H*W*3 bytes).

The output is written atomically (`jaxedit.io.atomic_file`): a failure leaves no partial file.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image

from jaxedit.errors import ConfigError, InputError
from jaxedit.io import atomic_file

FORMATS = (".gif", ".webp", ".mp4")
MP4_NEEDS_EXTRA = "MP4 needs the video extra: pip install 'jaxedit[video]'"

Frames = Iterable[np.ndarray] | Callable[[int], np.ndarray]


def video_format(path: str | os.PathLike) -> str:
    """The container of `path` from its extension: '.gif', '.webp' or '.mp4' (ConfigError otherwise)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"video {path}: unknown format {suffix or '(no extension)'!r}; expected {', '.join(FORMATS)}")
    return suffix


def write_video(
    path: str | os.PathLike,
    frames: Frames,
    fps: float = 10.0,
    pingpong: bool = False,
    count: int | None = None,
    loop: int = 0,
    quality: int = 90,
    lossless: bool = False,
) -> Path:
    """Write `frames` (uint8 [H, W, 3] each, all the same size) to `path` (.gif, .webp or .mp4).

    frames: an iterable (consumed lazily, one frame at a time) or a callable `frames(i)` with
    `count` frames. pingpong: forward then backward (module docstring, for the memory it costs).
    loop: GIF/WebP repetitions (0 = forever). quality, lossless: WebP only. Returns the path.
    """
    suffix = video_format(path)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ConfigError(f"video {path}: fps must be a positive number, got {fps!r}")
    if callable(frames) and (count is None or int(count) != count or count < 1):
        raise ConfigError(f"video {path}: a frame callable needs count >= 1, got {count!r}")
    if suffix == ".mp4":
        try:
            import av  # noqa: F401
        except ImportError:
            raise ConfigError(MP4_NEEDS_EXTRA) from None
    writer = {".gif": _GifWriter, ".webp": _WebPWriter, ".mp4": _Mp4Writer}[suffix]
    with atomic_file(path, suffix=suffix) as staging:
        with open(staging, "wb") as handle:
            sink = writer(handle, fps, loop, quality, lossless, str(path))
            _stream(sink, frames, count, pingpong, str(path))
            sink.close()
    return Path(path)


def _checked(frame, index: int, shape: tuple[int, ...] | None, path: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise InputError(f"video {path}: frame {index} must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
    if shape is not None and frame.shape != shape:
        raise InputError(f"video {path}: frame {index} is {list(frame.shape)}, frame 0 was {list(shape)}")
    return np.ascontiguousarray(frame)


def _stream(sink, frames: Frames, count: int | None, pingpong: bool, path: str) -> None:
    render = frames if callable(frames) else None
    source: Iterator = (render(i) for i in range(int(count))) if render else iter(frames)
    shape, kept, total = None, [], 0
    for index, frame in enumerate(source):
        frame = _checked(frame, index, shape, path)
        shape = frame.shape
        encoded = sink.add(frame)
        if pingpong and render is None and index > 0:
            kept.append(encoded)  # frame 0 is never repeated; the last one is dropped below
        total = index + 1
    if total == 0:
        raise InputError(f"video {path}: no frames")
    if not pingpong or total < 3:
        return
    if render is not None:
        for index in range(total - 2, 0, -1):
            sink.add(_checked(render(index), index, shape, path))
    else:
        for encoded in reversed(kept[:-1]):
            sink.add_encoded(encoded)


class _GifWriter:
    """GIF89a with a NETSCAPE loop block and one image block per frame, each with its own palette."""

    def __init__(self, handle, fps, loop, quality, lossless, path):
        self.handle, self.delay, self.loop, self.started = handle, max(1, round(100 / fps)), int(loop), False

    def add(self, frame: np.ndarray) -> bytes:
        if not self.started:
            height, width = frame.shape[:2]
            self.handle.write(b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0))
            self.handle.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", self.loop) + b"\x00")
            self.started = True
        paletted = Image.fromarray(frame, "RGB").quantize(256)
        encoded = b"".join(GifImagePlugin.getdata(paletted, (0, 0), duration=10 * self.delay, include_color_table=True))
        self.add_encoded(encoded)
        return encoded

    def add_encoded(self, encoded: bytes) -> None:
        self.handle.write(encoded)
        self.handle.flush()

    def close(self) -> None:
        self.handle.write(b";")


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def _uint24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


class _WebPWriter:
    """Animated WebP: RIFF header, VP8X (animation), ANIM (loop), one ANMF chunk per frame."""

    def __init__(self, handle, fps, loop, quality, lossless, path):
        self.handle, self.loop, self.started = handle, int(loop), False
        self.duration, self.quality, self.lossless = max(1, round(1000 / fps)), int(quality), bool(lossless)

    def add(self, frame: np.ndarray) -> bytes:
        height, width = frame.shape[:2]
        if not self.started:
            self.handle.write(b"RIFF\x00\x00\x00\x00WEBP")  # size patched in close()
            self.handle.write(_chunk(b"VP8X", b"\x02\x00\x00\x00" + _uint24(width - 1) + _uint24(height - 1)))
            self.handle.write(_chunk(b"ANIM", b"\xff\xff\xff\xff" + struct.pack("<H", self.loop)))
            self.started = True
        still = io.BytesIO()
        Image.fromarray(frame, "RGB").save(still, "WEBP", quality=self.quality, lossless=self.lossless)
        bitstream = b"".join(
            _chunk(tag, payload)
            for tag, payload in _riff_chunks(still.getvalue())
            if tag in (b"ALPH", b"VP8 ", b"VP8L")
        )
        header = _uint24(0) + _uint24(0) + _uint24(width - 1) + _uint24(height - 1) + _uint24(self.duration)
        encoded = _chunk(b"ANMF", header + b"\x02" + bitstream)  # flags: no blending, no disposal
        self.add_encoded(encoded)
        return encoded

    def add_encoded(self, encoded: bytes) -> None:
        self.handle.write(encoded)
        self.handle.flush()

    def close(self) -> None:
        size = self.handle.tell()
        self.handle.seek(4)
        self.handle.write(struct.pack("<I", size - 8))
        self.handle.seek(size)


def _riff_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(tag, payload) of each chunk of a RIFF/WEBP file."""
    position = 12
    while position + 8 <= len(data):
        tag, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        yield tag, data[position + 8 : position + 8 + size]
        position += 8 + size + (size % 2)


class _Mp4Writer:
    """H.264 in MP4 through PyAV, one frame at a time (PyAV copies each frame into the encoder)."""

    def __init__(self, handle, fps, loop, quality, lossless, path):
        import fractions

        import av

        self.av, self.container, self.stream = av, av.open(handle, mode="w", format="mp4"), None
        self.rate = fractions.Fraction(fps).limit_denominator(1001)

    def add(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        padded = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        if self.stream is None:
            codec = "libx264" if "libx264" in self.av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width, self.stream.height = padded.shape[1], padded.shape[0]
            self.stream.pix_fmt = "yuv420p"
        self.container.mux(self.stream.encode(self.av.VideoFrame.from_ndarray(padded, format="rgb24")))
        return frame

    def add_encoded(self, frame: np.ndarray) -> None:
        self.add(frame)

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()
