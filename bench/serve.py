"""Benchmark the browser editor: slider-move-to-image latency and compilations after start-up.

    python bench/serve.py                                  # small fixture + random config-f 1024
    python bench/serve.py --configs small --moves 100      # the fixture only (about a minute)
    python bench/serve.py --json bench/results/serve.json

For each configuration a real `jaxedit serve` server (jaxedit.serve) runs in this process on
127.0.0.1 and a client thread posts what the page posts when a slider moves: `/api/render` with
the edits so far (three attributes, the moved one's alpha changing every time, now and then a new
attribute, a new order, truncation or layer range; never a value seen before, so the renderer's
cache of recent full images never answers), then reads the whole PNG. Latency is from
sending the request to the last byte of the PNG (HTTP, JSON parsing, the edit, synthesis, PNG
encoding; not the browser's decoding). Reported: start-up (load + compile), the renderer's own
full/preview times, latency median and p95 with the preview ("preview": true, the dragging path)
and without (the full image, the release path), with the median CPU time per move (user + system,
all threads of this process: less sensitive than wall time to other jobs on a shared machine),
and the XLA compilations counted by a
`jax.monitoring` listener (backend compiles) over all moves after start-up: must be 0.

Configurations:
  small: the pSp fixture's decoder (64 px, W+ 10 x 32) and random official editors for 40 attributes;
         preview at 32 px (forced on, to measure it).
  1024:  a random config-f generator (1024 px, W+ 18 x 512, random weights) and random official
         editors for 40 attributes; the default preview, 128 px (the skip image after the 128 block).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxedit.io import atomic_write_text
from jaxedit.serve.render import PREVIEW_GAIN, Renderer
from jaxedit.serve.server import make_server, serve_in_thread

ATTRIBUTES_MOVED = ("Smiling", "Eyeglasses", "Young", "Male", "Bald", "Bangs")


class CompileCounter:
    """Counts XLA backend compilations while `active`."""

    def __init__(self):
        self.count = 0
        self.active = False
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            with self._lock:
                self.count += 1


def random_editors(num_ws: int, w_dim: int, seed: int = 0):
    """In-memory official editors (W+ [num_ws, w_dim]) for all 40 attributes, random weights."""
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.latent import PRESETS
    from jaxedit.latent.editors import editors_from_params
    from jaxedit.latent.modules import classifier_from_preset, init_classifier_params

    preset = PRESETS["official"].replace(num_ws=num_ws, w_dim=w_dim, classifier_hidden=(16,))
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: init_classifier_params(classifier_from_preset(preset), jax.random.key(0)))
    classifier = jax.tree.map(
        lambda leaf: (
            (rng.standard_normal(leaf.shape, np.float32) / np.sqrt(leaf.shape[0]))
            if len(leaf.shape) == 2
            else np.zeros(leaf.shape, np.float32)
        ),
        shapes,
    )
    count = len(ATTRIBUTES)
    transformers = {
        "kernel": rng.standard_normal((count, num_ws, w_dim, w_dim), np.float32),
        "bias": (0.3 * rng.standard_normal((count, num_ws, w_dim))).astype(np.float32),
    }
    return editors_from_params(preset, classifier, transformers, list(ATTRIBUTES), training={"origin": "bench"})


def small_setup():
    from jaxedit.convert.stylegan2 import convert_stylegan2
    from jaxedit.stylegan2 import load_generator

    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "encoders" / "psp_encoder_small.pt"
    with tempfile.TemporaryDirectory() as root:
        convert_stylegan2(fixture, Path(root) / "generator")
        generator = load_generator(Path(root) / "generator")
    return generator, random_editors(generator.num_ws, generator.w_dim), dict(preview="on", preview_resolution=32)


def config_f_setup():
    from jaxedit.stylegan2 import GeneratorConfig, random_generator

    generator = random_generator(GeneratorConfig(), jax.random.key(0))
    return generator, random_editors(generator.num_ws, generator.w_dim), dict(preview="on", preview_resolution=None)


SETUPS = {"small": small_setup, "1024": config_f_setup}


def slider_moves(count: int, num_ws: int, seed: int = 0) -> list[dict]:
    """Request bodies of `count` slider moves: mostly the same slider stepping, sometimes a new one,
    a reordering, a truncation or layer change (all of which must not recompile)."""
    rng = np.random.default_rng(seed)
    order = list(ATTRIBUTES_MOVED[:3])
    values = {name: 0.0 for name in ATTRIBUTES_MOVED}
    directions = {name: 1.0 for name in ATTRIBUTES_MOVED}
    truncation, layers = 1.0, [0, min(10, num_ws - 1)]
    bodies = []
    for k in range(count):
        if k % 17 == 16:
            order = [str(n) for n in rng.permutation(ATTRIBUTES_MOVED)[: int(rng.integers(1, 7))]]
        if k % 23 == 22:
            truncation = round(float(rng.uniform(0.5, 1.0)), 2)
        if k % 29 == 28:
            first = int(rng.integers(0, num_ws // 2))
            layers = [first, int(rng.integers(first, num_ws))]
        moved = order[-1]
        step = float(rng.uniform(0.02, 0.3)) * directions[moved]
        if abs(values[moved] + step) > 1.5:  # bounce off the slider's ends: every move is a new value
            directions[moved], step = -directions[moved], -step
        values[moved] = round(values[moved] + step, 4)
        bodies.append(
            {
                "source": {"seed": 7},
                "edits": [[name, values[name]] for name in order],
                "truncation": truncation,
                "layers": layers,
            }
        )
    return bodies


def time_moves(server, bodies: list[dict], preview: bool) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process: every thread, user + system) per move."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=600)
    seconds, cpu = [], []
    try:
        for body in bodies:
            data = json.dumps({**body, "preview": preview}).encode()
            started, started_cpu = time.perf_counter(), time.process_time()
            connection.request("POST", "/api/render", body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            if response.status != 200 or not payload.startswith(b"\x89PNG"):
                raise RuntimeError(f"render failed: {response.status} {payload[:200]!r}")
    finally:
        connection.close()
    return seconds, cpu


def summarise(timed: tuple[list[float], list[float]]) -> dict:
    ms, cpu_ms = np.asarray(timed[0]) * 1000.0, np.asarray(timed[1]) * 1000.0
    return {
        "moves": len(ms),
        "median_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(np.mean(ms)), 2),
        "cpu_median_ms": round(float(np.median(cpu_ms)), 2),
    }


def run_config(name: str, moves: int, full_moves: int, counter: CompileCounter) -> dict:
    print(f"[{name}] loading ...", flush=True)
    started = time.perf_counter()
    generator, editors, options = SETUPS[name]()
    loaded = time.perf_counter() - started
    renderer = Renderer(generator, editors, **options)
    print(f"[{name}] compiling ...", flush=True)
    timings = renderer.warm_up(repeats=3)
    server = make_server(renderer, "127.0.0.1", 0, log=lambda message: print(message, file=sys.stderr))
    serve_in_thread(server)
    auto_preview = timings.preview is not None and timings.preview < PREVIEW_GAIN * timings.full  # what "auto" picks
    try:
        counter.count, counter.active = 0, True
        preview_times = time_moves(server, slider_moves(moves, renderer.num_ws, seed=1), preview=True)
        full_times = time_moves(server, slider_moves(full_moves, renderer.num_ws, seed=2), preview=False)
        counter.active = False
        compilations = counter.count
    finally:
        counter.active = False
        server.shutdown()
        server.server_close()
    result = {
        "config": name,
        "resolution": renderer.resolution,
        "latent": [renderer.num_ws, renderer.w_dim],
        "attributes": len(renderer.attributes),
        "load_s": round(loaded, 2),
        "compile_s": round(timings.compile, 2),
        "renderer_full_ms": round(1000 * timings.full, 2),
        "renderer_preview_ms": round(1000 * timings.preview, 2) if timings.preview is not None else None,
        "preview_resolution": renderer.preview_resolution,
        "auto_preview": auto_preview,
        "with_preview": summarise(preview_times),
        "without_preview": summarise(full_times),
        "compilations_after_startup": compilations,
        "moves_counted": len(preview_times[0]) + len(full_times[0]),
    }
    print(json.dumps(result), flush=True)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| config | start-up compile | with preview: median / p95 (CPU) | without preview: median / p95 (CPU) "
        "| auto preview | XLA compilations after start-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        p, f = r["with_preview"], r["without_preview"]
        lines.append(
            f"| {r['config']} ({r['resolution']} px, preview {r['preview_resolution']} px) | {r['compile_s']:.1f} s "
            f"| {p['median_ms']:.1f} / {p['p95_ms']:.1f} ms ({p['cpu_median_ms']:.1f} ms CPU; {p['moves']} moves) "
            f"| {f['median_ms']:.1f} / {f['p95_ms']:.1f} ms ({f['cpu_median_ms']:.1f} ms CPU; {f['moves']} moves) "
            f"| {'on' if r['auto_preview'] else 'off'} | {r['compilations_after_startup']} over {r['moves_counted']} moves |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,1024", help="comma-separated: small, 1024")
    parser.add_argument("--moves", type=int, default=100, help="slider moves with the preview (default 100)")
    parser.add_argument(
        "--full-moves",
        default="small:100,1024:20",
        help="moves without the preview per config (default small:100,1024:20)",
    )
    parser.add_argument("--json", default="bench/results/serve.json", help="where to write the results")
    args = parser.parse_args(argv)
    full = {k: int(v) for k, v in (item.split(":") for item in args.full_moves.split(","))}
    counter = CompileCounter()
    results = [run_config(name, args.moves, full.get(name, args.moves), counter) for name in args.configs.split(",")]
    report = {
        "benchmark": "serve",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()],
            "load_average": os.getloadavg(),
            "jax": jax.__version__,
        },
        "command": "python bench/serve.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "results": results,
    }
    print(table(results))
    atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if all(r["compilations_after_startup"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
