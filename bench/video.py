"""Peak memory of `jaxedit edit --sweep ... --out x.mp4|.gif` against the number of frames.

Each frame count runs in a fresh subprocess (so its peak RSS is its own): a random generator of the
given resolution (config-f channels at 1024), random official W+ editors for one attribute, then
`jaxedit.editing.video.sweep_video`, which renders `--batch-size` frames at a time and streams them
to the encoder. The table shows wall time, peak RSS and the ratio to the smallest count's peak;
memory flat in the number of frames means ratios near 1.

    python bench/video.py --resolution 1024 --counts 11,121 --format mp4 --json bench/results/video.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import sys, time, resource, json
import jax, numpy as np
from jaxedit.latent import PRESETS
from jaxedit.latent.editors import editors_from_params
from jaxedit.latent.modules import classifier_from_preset, init_classifier_params
from jaxedit.stylegan2 import GeneratorConfig, random_generator
from jaxedit.editing.video import sweep_video

resolution, count, out, batch = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
generator = random_generator(GeneratorConfig(resolution=resolution), jax.random.key(0))
preset = PRESETS["official"].replace(num_ws=generator.num_ws, w_dim=generator.w_dim, classifier_hidden=(16,))
classifier = init_classifier_params(classifier_from_preset(preset), jax.random.key(1))
rng = np.random.default_rng(0)
transformers = {
    "kernel": (0.02 * rng.standard_normal((1, generator.num_ws, generator.w_dim, generator.w_dim))).astype(np.float32),
    "bias": (0.3 * rng.standard_normal((1, generator.num_ws, generator.w_dim))).astype(np.float32),
}
editors = editors_from_params(preset, classifier, transformers, ["Smiling"], training={"origin": "bench"})
latents = np.asarray(generator.mapping(np.random.RandomState(0).randn(1, generator.z_dim)))
began = time.perf_counter()
sweep_video(out, generator, editors, latents, "Smiling", np.linspace(-1.5, 1.5, count), batch_size=batch)
elapsed = time.perf_counter() - began
print(json.dumps({"seconds": elapsed, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(resolution: int, count: int, suffix: str, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        out = Path(root) / f"sweep.{suffix}"
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(resolution), str(count), str(out), str(batch)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"worker failed for {count} frames: {done.stderr.strip().splitlines()[-1:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update(frames=count, total_seconds=time.perf_counter() - began, file_bytes=out.stat().st_size)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--counts", default="11,121")
    parser.add_argument("--format", choices=("mp4", "gif", "webp"), default="mp4")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = [run(args.resolution, int(c), args.format, args.batch_size) for c in args.counts.split(",")]
    base = rows[0]["peak_rss_mib"]
    print(f"{'frames':>7} {'sweep s':>9} {'peak RSS MiB':>13} {'ratio':>6} {'file KB':>9}")
    for row in rows:
        row["rss_ratio"] = row["peak_rss_mib"] / base
        print(
            f"{row['frames']:>7} {row['seconds']:>9.1f} {row['peak_rss_mib']:>13.0f} {row['rss_ratio']:>6.2f} "
            f"{row['file_bytes'] / 1024:>9.0f}"
        )
    if args.json:
        from jaxedit.io import atomic_write_text

        record = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "command": " ".join(sys.argv),
            "resolution": args.resolution,
            "format": args.format,
            "rows": rows,
        }
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
