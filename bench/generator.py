"""Benchmark the StyleGAN2 synthesis network: images/s per precision mode and batch size.

    python bench/generator.py                                   # config-f 1024, random params, batch 1..32
    python bench/generator.py --gen ported_weights/stylegan2-ffhq-config-f
    python bench/generator.py --resolution 256 --batch-sizes 1,4 --json out.json   # small, e.g. on a CPU

For each precision mode ('highest' = strict float32, 'default' = TF32 on GPUs, 'bfloat16') and batch
size it times (a) our fast formulation (NHWC, `conv(x * s, W) * d`, the up-conv as one lhs-dilated
conv + FIR, the whole synthesis jitted) and (b) a naive baseline in the same run (per-sample
modulated, demodulated weights, convolved through `vmap` of a conv, i.e. a grouped conv; same
FIR/epilogue code). Input: W+ latents from the mapping of random z, const noise. Reported per row:
images/s (after one warm-up call, which also gives the compile time), XLA's memory analysis of the
compiled program (arguments + outputs + temporaries) and, where the backend reports it, the
device's peak bytes in use so far (`memory_stats()['peak_bytes_in_use']`; monotone over the run).
`--bf16-check` also renders the same latents in float32 'highest' and 'bfloat16' at the chosen
resolution and reports max |difference| (absolute, and relative to the image's max |value|).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxedit.stylegan2 import (
    GeneratorConfig,
    LoadedGenerator,
    load_generator,
    nvlabs_channels,
    ops,
    random_generator,
)

PRECISIONS = ("highest", "default", "bfloat16")


# ------------------------------------------------------------------------------------------------
# The naive baseline: per-sample weights (same FIR, epilogue and toRGB as the fast path)
# ------------------------------------------------------------------------------------------------


def naive_synthesis(config: GeneratorConfig, precision: str):
    """A function (synthesis_params, ws [B, num_ws, w_dim]) -> images [B, H, W, 3], const noise,
    with every modulated conv as a per-sample weight `W * s`, demodulated, vmapped conv."""
    mode = ops.Precision.from_name(precision)
    lax_precision = mode.lax_precision

    def styles(p, w):
        return jnp.matmul(w, p["kernel"] / np.sqrt(w.shape[-1]), precision=lax_precision) + p["bias"]

    def layer(p, x, w, up):
        s = styles(p["affine"], w)
        y = ops.naive_modulated_conv2d(x, p["kernel"], s, up=up, precision=mode)
        noise = p["noise_const"][None, :, :, None]
        return ops.conv_epilogue(y, None, noise, p["noise_strength"], p["bias"], config.conv_clamp, mode.compute_dtype)

    def rgb(p, x, w):
        return ops.to_rgb(x, p["kernel"], styles(p["affine"], w), p["bias"], config.conv_clamp, mode)

    def run(params, ws):
        b4 = params["b4"]
        x = jnp.broadcast_to(b4["const"][None].astype(mode.compute_dtype), (ws.shape[0],) + b4["const"].shape)
        x = layer(b4["conv1"], x, ws[:, 0], False)
        img = rgb(b4["torgb"], x, ws[:, 1])
        for k, res in enumerate(config.resolutions[1:], start=1):
            block = params[f"b{res}"]
            x = layer(block["conv0"], x, ws[:, 2 * k - 1], True)
            x = layer(block["conv1"], x, ws[:, 2 * k], False)
            img = ops.upsample2d(img) + rgb(block["torgb"], x, ws[:, 2 * k + 1])
        return img

    return run


def fast_synthesis(generator: LoadedGenerator):
    module = generator.synthesis_module
    return lambda params, ws: module.apply({"params": params}, ws, "const")


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def peak_device_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def time_synthesis(fn, params, ws, min_iters: int, min_seconds: float) -> dict:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params, ws).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    xla_bytes = None
    if analysis is not None:
        xla_bytes = int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes)
    jax.block_until_ready(compiled(params, ws))  # warm-up
    iters, elapsed = 0, 0.0
    while iters < min_iters or elapsed < min_seconds:
        batch = max(1, min_iters if iters == 0 else iters)  # dispatch asynchronously, block once
        start = time.perf_counter()
        out = None
        for _ in range(batch):
            out = compiled(params, ws)
        jax.block_until_ready(out)
        elapsed += time.perf_counter() - start
        iters += batch
    return {
        "images_per_s": ws.shape[0] * iters / elapsed,
        "ms_per_batch": 1000 * elapsed / iters,
        "iterations": iters,
        "compile_s": compile_s,
        "xla_memory_bytes": xla_bytes,
        "peak_device_bytes": peak_device_bytes(),
    }


def bf16_check(generator: LoadedGenerator, batch: int, seed: int) -> dict:
    z = np.random.RandomState(seed).randn(batch, generator.z_dim).astype(np.float32)
    ws = generator.mapping(z)
    reference = np.asarray(generator.with_precision("highest").synthesis(ws))
    result = {"batch": batch, "image_max_abs": float(np.max(np.abs(reference))), "image_std": float(reference.std())}
    for mode in ("default", "bfloat16"):
        out = np.asarray(generator.with_precision(mode).synthesis(ws))
        diff = np.abs(out - reference)
        result[mode] = {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "max_abs_diff_relative": float(diff.max() / np.max(np.abs(reference))),
        }
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen", help="a converted generator directory (default: random config-f params)")
    parser.add_argument(
        "--resolution", type=int, default=1024, help="resolution of the random generator (default 1024)"
    )
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32", help="comma-separated (default 1,2,4,8,16,32)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="subset of highest,default,bfloat16")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive per-sample-weight baseline")
    parser.add_argument("--naive-max-batch", type=int, default=32, help="largest batch for the naive baseline (memory)")
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument(
        "--bf16-check", action="store_true", help="also measure bfloat16/default vs float32 image differences"
    )
    parser.add_argument("--bf16-check-batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",")]
    for p in precisions:
        ops.Precision.from_name(p)
    if args.gen:
        base = load_generator(args.gen)
        source = args.gen
    else:
        config = GeneratorConfig(resolution=args.resolution, channels=nvlabs_channels(args.resolution))
        base = random_generator(config, jax.random.key(args.seed))
        source = f"random config-f params at {args.resolution}"
    cfg = base.config
    device = jax.devices()[0]
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "device": f"{device.platform}: {device.device_kind}",
        "device_count": jax.device_count(),
        "host": f"{platform.machine()} {os.cpu_count()} CPUs",
        "jax": jax.__version__,
        "generator": source,
        "resolution": cfg.resolution,
        "command": " ".join(sys.argv),
    }
    print(f"# {info['date']}  {info['device']}  host {info['host']}  jax {info['jax']}  {source}")
    rng = np.random.RandomState(args.seed)
    rows = []
    header = f"{'formulation':<8} {'precision':<9} {'batch':>5} {'img/s':>9} {'ms/batch':>10} {'compile s':>9} {'XLA MiB':>9} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for precision in precisions:
        generator = base.with_precision(precision)
        candidates = [("fast", fast_synthesis(generator))]
        if not args.no_naive:
            candidates.append(("naive", naive_synthesis(cfg, precision)))
        for batch in batch_sizes:
            ws = generator.mapping(rng.randn(batch, cfg.z_dim).astype(np.float32))
            for name, fn in candidates:
                if name == "naive" and batch > args.naive_max_batch:
                    continue
                try:
                    result = time_synthesis(fn, generator.params["synthesis"], ws, args.min_iters, args.min_seconds)
                except Exception as error:  # e.g. out of memory: record and go on
                    result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
                row = {"formulation": name, "precision": precision, "batch": batch, **result}
                rows.append(row)
                if "error" in row:
                    print(f"{name:<8} {precision:<9} {batch:>5} {row['error']}")
                    continue
                mib = lambda v: f"{v / 2**20:9.0f}" if v is not None else f"{'n/a':>9}"
                print(
                    f"{name:<8} {precision:<9} {batch:>5} {row['images_per_s']:9.2f} {row['ms_per_batch']:10.1f} "
                    f"{row['compile_s']:9.1f} {mib(row['xla_memory_bytes'])} {mib(row['peak_device_bytes'])}",
                    flush=True,
                )
    result = {"info": info, "rows": rows}
    if args.bf16_check:
        check = bf16_check(base, args.bf16_check_batch, args.seed)
        result["precision_check"] = check
        print(
            f"\nprecision check at {cfg.resolution} (batch {check['batch']}, image max |x| {check['image_max_abs']:.3f}, std {check['image_std']:.3f}):"
        )
        for mode in ("default", "bfloat16"):
            c = check[mode]
            print(
                f"  {mode:<9} vs float32 highest: max |diff| {c['max_abs_diff']:.2e}  mean {c['mean_abs_diff']:.2e}  "
                f"relative to max |x| {c['max_abs_diff_relative']:.2e}"
            )
    if args.json:
        from jaxedit.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
