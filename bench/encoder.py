"""Benchmark editing a photo: encode (pSp) + one edit + render, per photo, at batch 1 and 8.

    python bench/encoder.py                                   # full size: pSp IR-SE-50 256 -> W+ 18x512, config-f 1024
    python bench/encoder.py --json bench/results/encoder_cpu.json
    python bench/encoder.py --small --iters 1                 # the fixture sizes (64 px): checks the script

Random weights of the real shapes (nothing to download): the pSp encoder of the released FFHQ
checkpoint (`EncoderConfig()`: IR-SE-50 at 256x256, 18 style heads of 512; 267M parameters), the
config-f 1024 generator (`GeneratorConfig()`), and one official-kind W+ latent transformer
(`PRESETS["official"]`, 18 x 512). The pipeline per photo is the aligned 256 crop -> W+ -> T(w, a)
on layers 0-10 -> a 1024x1024 image. Three formulations, in one run and on the same inputs:

- **fused**: the three stages in ONE jitted program (what a server or a batch job would compile);
- **library**: what `jaxedit edit --image` runs: `LoadedEncoder.encode` (jitted), `apply_edit`
  (op by op on the small latents), `LoadedGenerator.synthesis` (jitted), synchronising between;
- **naive**: the same stages under `jax.disable_jit()`, every operation dispatched on its own
  (no fusion, no whole-program scheduling).

Each row: seconds per photo (wall clock, and the process's CPU seconds) after a warm-up call that
compiles, the first call's time (compile + run), and the peak resident memory of the process
during that row (`VmHWM`, reset before each row through /proc/self/clear_refs where Linux allows;
else the peak since the start). The host steps of the photo path, FFHQ alignment (numpy/Pillow)
and paste-back into the photo, are timed once per photo on the astronaut fixture upscaled 3x
(1152x960). The JSON is rewritten atomically after every row (a run cut short keeps its rows).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxedit.editing.edits import apply_edit
from jaxedit.encoders import EncoderConfig, build_encoder, random_encoder
from jaxedit.latent import PRESETS, classifier_from_preset, editors_from_params, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.stylegan2 import GeneratorConfig, random_generator
from jaxedit.stylegan2.networks import SynthesisNetwork

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "encoders"
ALPHA = 1.25


# ------------------------------------------------------------------------------------------------
# Memory and time
# ------------------------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def block(tree):
    return jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


# ------------------------------------------------------------------------------------------------
# The models (random weights, real shapes)
# ------------------------------------------------------------------------------------------------


def build_models(small: bool, seed: int):
    if small:
        encoder_config = EncoderConfig(
            input_size=64,
            stem_channels=16,
            stage_depths=(16, 20, 24, 36),
            se_channels=(1, 1, 1, 2),
            n_styles=10,
            w_dim=32,
        )
        generator_config = GeneratorConfig(
            resolution=64, z_dim=32, w_dim=32, mapping_layers=3, channels={4: 32, 8: 32, 16: 24, 32: 16, 64: 8}
        )
        preset = PRESETS["official"].replace(num_ws=10, w_dim=32, classifier_hidden=(32,))
    else:
        encoder_config, generator_config, preset = EncoderConfig(), GeneratorConfig(), PRESETS["official"]
    encoder = random_encoder(encoder_config, seed=seed)
    generator = random_generator(generator_config, jax.random.key(seed))
    classifier = init_classifier_params(classifier_from_preset(preset), jax.random.key(seed + 1))
    transformer = init_transformer_params(transformer_from_preset(preset), jax.random.key(seed + 2))
    stacked = jax.tree.map(lambda leaf: leaf[None], transformer)
    editors = editors_from_params(preset, classifier, stacked, ["Smiling"])
    return encoder, generator, editors


# ------------------------------------------------------------------------------------------------
# The three formulations: images [B, S, S, 3] in [-1, 1] -> images [B, R, R, 3]
# ------------------------------------------------------------------------------------------------


def fused_pipeline(encoder, generator, editors):
    encoder_module = build_encoder(encoder.config)
    synthesis_module = SynthesisNetwork(generator.config)
    transformer = editors.transformer_params_for("Smiling")

    @jax.jit
    def run(params, images, alpha):
        codes = encoder_module.apply({"params": params["encoder"]}, images)
        ws = codes + params["latent_avg"][None]
        edited = apply_edit(editors, params["transformer"], ws, alpha)
        return synthesis_module.apply({"params": params["synthesis"]}, edited, "const")

    params = {
        "encoder": encoder.params["encoder"],
        "latent_avg": encoder.params["latent_avg"],
        "transformer": transformer,
        "synthesis": generator.params["synthesis"],
    }
    return lambda images: run(params, images, jnp.float32(ALPHA))


def library_pipeline(encoder, generator, editors):
    transformer = editors.transformer_params_for("Smiling")

    def run(images):
        ws = encoder.encode(images)
        edited = apply_edit(editors, transformer, ws, ALPHA)
        return generator.synthesis(edited, "const")

    return run


def naive_pipeline(encoder, generator, editors):
    encoder_module = build_encoder(encoder.config)
    synthesis_module = SynthesisNetwork(generator.config)
    transformer = editors.transformer_params_for("Smiling")

    def run(images):
        with jax.disable_jit():
            codes = encoder_module.apply({"params": encoder.params["encoder"]}, jnp.asarray(images))
            ws = codes + encoder.params["latent_avg"][None]
            edited = apply_edit(editors, transformer, ws, ALPHA)
            return synthesis_module.apply({"params": generator.params["synthesis"]}, edited, "const")

    return run


FORMULATIONS = {"fused": fused_pipeline, "library": library_pipeline, "naive": naive_pipeline}


def time_rows(pipeline, images: np.ndarray, iters: int) -> dict:
    batch = images.shape[0]
    can_reset = reset_peak_rss()
    start = time.perf_counter()
    first = block(pipeline(images))
    first_seconds = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(iters):
        wall, cpu = time.perf_counter(), cpu_seconds()
        block(pipeline(images))
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return {
        "batch": batch,
        "first_call_s": first_seconds,
        "s_per_photo": float(np.median(walls)) / batch,
        "cpu_s_per_photo": float(np.median(cpus)) / batch,
        "iters": iters,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_scope": "this row" if can_reset else "process so far",
        "output_shape": list(np.shape(first)),
    }


# ------------------------------------------------------------------------------------------------
# The host steps: alignment and paste-back
# ------------------------------------------------------------------------------------------------


def time_host_steps(input_size: int, resolution: int) -> dict:
    from PIL import Image

    from jaxedit.encoders.align import align_face
    from jaxedit.encoders.paste import paste_back
    from jaxedit.encoders.photo import load_photo

    photo, _ = load_photo(FIXTURES / "astronaut_face.jpg")
    landmarks = np.array(json.loads((FIXTURES / "astronaut_face_landmarks.json").read_text())["landmarks"]) * 3
    height, width = photo.shape[:2]
    photo = np.asarray(Image.fromarray(photo).resize((3 * width, 3 * height), Image.Resampling.LANCZOS))
    start = time.perf_counter()
    aligned, transform = align_face(photo, landmarks, input_size)
    align_seconds = time.perf_counter() - start
    face = np.random.default_rng(0).uniform(-1, 1, (resolution, resolution, 3)).astype(np.float32)
    start = time.perf_counter()
    paste_back(photo, face, transform)
    paste_seconds = time.perf_counter() - start
    return {
        "photo": f"{photo.shape[1]}x{photo.shape[0]}",
        "align_s": align_seconds,
        "paste_back_s": paste_seconds,
        "aligned": list(aligned.shape),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated (default 1,8)")
    parser.add_argument("--formulations", default="fused,library,naive", help="which to run, in order")
    parser.add_argument("--iters", type=int, default=2, help="timed calls per row after the warm-up (median)")
    parser.add_argument("--small", action="store_true", help="the 64 px fixture sizes instead of full size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here (atomically)")
    return parser.parse_args(argv)


def describe_run(args, argv, encoder, generator, build_seconds: float, rows: list, host: dict) -> dict:
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/encoder.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
        },
        "sizes": {
            "encoder": encoder.config.to_dict(),
            "encoder_parameters": encoder.num_parameters,
            "generator_resolution": generator.resolution,
            "num_ws": generator.num_ws,
            "w_dim": generator.w_dim,
        },
        "alpha": ALPHA,
        "iters": args.iters,
        "models_built_s": build_seconds,
        "rows": rows,
        "host_steps": host,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    names = [n.strip() for n in args.formulations.split(",")]
    for name in names:
        if name not in FORMULATIONS:
            raise SystemExit(f"unknown formulation {name!r}: expected {', '.join(FORMULATIONS)}")
    start = time.perf_counter()
    encoder, generator, editors = build_models(args.small, args.seed)
    build_seconds = time.perf_counter() - start
    print(
        f"models built in {build_seconds:.1f} s: encoder {encoder.kind} {encoder.input_size}px "
        f"({encoder.num_parameters:,} params) -> W+ [{encoder.num_ws}, {encoder.w_dim}], generator "
        f"{generator.resolution}px; peak RSS {peak_rss_mib():.0f} MiB",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    size = encoder.input_size
    rows: list[dict] = []
    host: dict = {}

    def save() -> None:  # after every row, so a run cut short keeps what it measured
        if args.json:
            from jaxedit.io import atomic_write_text

            report = describe_run(args, argv, encoder, generator, build_seconds, rows, host)
            atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")

    for batch in batch_sizes:
        images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
        for name in names:
            row = {
                "formulation": name,
                **time_rows(FORMULATIONS[name](encoder, generator, editors), images, args.iters),
            }
            rows.append(row)
            save()
            print(
                f"{name:<8} batch {batch}: {row['s_per_photo']:.2f} s/photo wall, {row['cpu_s_per_photo']:.2f} s/photo "
                f"CPU, first call {row['first_call_s']:.1f} s, peak RSS {row['peak_rss_mib']:.0f} MiB "
                f"({row['peak_rss_scope']})",
                flush=True,
            )
    host.update(time_host_steps(size, generator.resolution))
    save()
    print(
        f"host steps on a {host['photo']} photo: align {host['align_s']:.3f} s, paste-back {host['paste_back_s']:.3f} s"
    )

    print("\n| formulation | batch | s / photo (wall) | CPU s / photo | first call s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['formulation']} | {row['batch']} | {row['s_per_photo']:.2f} | {row['cpu_s_per_photo']:.2f} | "
            f"{row['first_call_s']:.1f} | {row['peak_rss_mib']:.0f} |"
        )
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
