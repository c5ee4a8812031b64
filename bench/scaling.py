"""Benchmark: training throughput against device count (the `jaxedit.training.sharding` mesh).

    python bench/scaling.py [--devices 1,2,4,8] [--full] [--attributes 40] [--steps 10] [--chunk 5]
                            [--rounds 2] [--json out.json] [--markdown]

For each device count n it runs, in a fresh subprocess, the programs training uses:

- `transformers (attr=n)`: `jaxedit.training.transformers.transformer_chunks`, the K vmapped transformers
  split over an n x 1 mesh (K padded to a multiple of n), `--chunk` steps per call in a `lax.scan`;
- `transformers (attr=n/2 x data=2)`: the same on an (n/2) x 2 mesh (batch split in two), n >= 2;
- `classifier (data=n)`: `jaxedit.training.classifier.classifier_chunks`, the batch split n ways.

On a CPU (no accelerator found) the n devices are virtual: the subprocess runs with
``XLA_FLAGS=--xla_force_host_platform_device_count=n``, so they share the same cores and the
numbers show the cost of partitioning, not a speed-up. With GPUs or TPUs the subprocess uses the
first n real devices. Each program is compiled and warmed up first, then timed over `--steps` steps
in `--rounds` rounds; the best round counts (the machine may be shared). The full-schedule time is
extrapolated to the official schedule (10 epochs x 843 steps for every attribute).

Sizes: `--full` is the official preset (W+ 18 x 512, classifier 9216-2048-512-40, batch 32;
classifier batch 256); the default is a reduced model that keeps a CPU run to a few minutes
(W+ 4 x 512, classifier hidden 256-64, same batches).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFFICIAL_SCHEDULE_STEPS = 10 * (27000 // 32)  # steps per attribute: 10 epochs x 843
POOL = 2048  # distinct random latents the batches are gathered from


def _block(tree) -> None:
    import jax

    jax.tree.map(lambda leaf: leaf.block_until_ready() if hasattr(leaf, "block_until_ready") else leaf, tree)


def _time_rounds(advance, state, make_indices, steps: int, chunk: int, rounds: int) -> tuple[float, object]:
    """Best seconds per step over `rounds` rounds of `steps` steps (after one compile/warm-up call)."""
    state, metrics = advance(state, make_indices(0))
    _block((state, metrics))
    best = float("inf")
    calls = max(1, steps // chunk)
    for round_index in range(rounds):
        started = time.perf_counter()
        for call in range(calls):
            state, metrics = advance(state, make_indices(1 + round_index * calls + call))
        _block((state, metrics))
        best = min(best, (time.perf_counter() - started) / (calls * chunk))
    return best, state


def worker(args) -> dict:
    """Runs inside the subprocess: time the three programs on n devices, return the numbers."""
    import jax
    import numpy as np

    from jaxedit.latent import get_preset
    from jaxedit.latent.losses import correlation_matrix
    from jaxedit.training import sharding as S
    from jaxedit.training.classifier import classifier_chunks
    from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer
    from jaxedit.training.transformers import transformer_chunks

    n = args.worker
    devices = jax.devices()[:n]
    if len(devices) < n:
        raise SystemExit(f"asked for {n} devices, {len(jax.devices())} available")
    preset = get_preset("official")
    if not args.full:
        preset = preset.replace(num_ws=4, classifier_hidden=(256, 64))
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(POOL,) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((POOL, preset.num_attributes)) < 0.4).astype(np.float32)
    correlation = np.asarray(correlation_matrix(labels))
    attributes = np.arange(args.attributes) % preset.num_attributes
    classifier_trainer = ClassifierTrainer.create(preset, 100)
    classifier_state = jax.jit(classifier_trainer.init)(jax.random.key(1))
    trainer = TransformerTrainer.create(preset)
    state0 = jax.jit(trainer.init, static_argnums=1)(jax.random.key(0), args.attributes)

    def indices_for(batch):
        return lambda call: np.random.default_rng(call).integers(0, POOL, size=(args.chunk, batch), dtype=np.int32)

    rows = []
    meshes = [(n, 1)] + ([(n // 2, 2)] if n >= 2 and n % 2 == 0 else [])
    for num_attr, num_data in meshes:
        mesh = S.make_mesh(num_attr, num_data, devices=devices)
        state = S.place_per_attribute(state0, mesh)
        advance = transformer_chunks(trainer, mesh, state, classifier_state.params, correlation, attributes, latents)
        seconds, _ = _time_rounds(advance, state, indices_for(preset.batch_size), args.steps, args.chunk, args.rounds)
        rows.append(
            {
                "program": f"transformers (attr={num_attr} x data={num_data})",
                "devices": n,
                "attributes": args.attributes,
                "padded_attributes": S.padded_num_attributes(args.attributes, mesh),
                "batch": preset.batch_size,
                "ms_per_step": 1e3 * seconds,
                "attribute_steps_per_s": args.attributes / seconds,
                "samples_per_s": args.attributes * preset.batch_size / seconds,
                "official_schedule_s": OFFICIAL_SCHEDULE_STEPS * seconds,
            }
        )
    mesh = S.make_mesh(1, n, devices=devices)
    advance = classifier_chunks(classifier_trainer, mesh, latents, labels)
    batch = preset.classifier_batch_size
    seconds, _ = _time_rounds(
        advance, S.place(classifier_state, S.replicated(mesh)), indices_for(batch), args.steps, args.chunk, args.rounds
    )
    rows.append(
        {
            "program": f"classifier (data={n})",
            "devices": n,
            "batch": batch,
            "ms_per_step": 1e3 * seconds,
            "samples_per_s": batch / seconds,
        }
    )
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "rows": rows,
        "latent_shape": list(preset.latent_shape),
        "classifier_widths": list(preset.classifier_widths),
    }


def accelerator_present() -> bool:
    """Whether JAX finds a GPU/TPU (asked in a subprocess, so this process never holds device memory)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.default_backend())"], capture_output=True, text=True
    )
    return probe.returncode == 0 and probe.stdout.strip().splitlines()[-1] != "cpu"


def run_count(n: int, args, on_cpu: bool) -> dict:
    env = dict(os.environ)
    if on_cpu:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(n),
        "--attributes",
        str(args.attributes),
        "--steps",
        str(args.steps),
        "--chunk",
        str(args.chunk),
        "--rounds",
        str(args.rounds),
    ] + (["--full"] if args.full else [])
    process = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    if process.returncode != 0:
        raise SystemExit(f"device count {n} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def markdown(results: list[dict]) -> str:
    lines = [
        "| devices | program | ms / step | attribute-steps / s | samples / s | official schedule (extrapolated) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for result in results:
        for row in result["rows"]:
            per_attr = f"{row['attribute_steps_per_s']:.0f}" if "attribute_steps_per_s" in row else ""
            schedule = f"{row['official_schedule_s']:.0f} s" if "official_schedule_s" in row else ""
            lines.append(
                f"| {row['devices']} | {row['program']} | {row['ms_per_step']:.1f} | {per_attr} | "
                f"{row['samples_per_s']:.0f} | {schedule} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8", help="device counts to run (comma-separated)")
    parser.add_argument("--full", action="store_true", help="official sizes (W+ 18x512, 9216-2048-512-40)")
    parser.add_argument("--attributes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--chunk", type=int, default=5, help="steps per compiled call (lax.scan)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per device count")
    parser.add_argument("--json", default="", help="write the numbers here")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    counts = [int(c) for c in args.devices.split(",") if c]
    on_cpu = not accelerator_present()
    results = []
    for n in counts:
        started = time.perf_counter()
        results.append(run_count(n, args, on_cpu))
        print(f"{n} device(s) done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    table = markdown(results)
    print(table)
    if args.json:
        from jaxedit.io import atomic_write_text

        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "host": platform.node(),
                    "cpu_count": os.cpu_count(),
                    "virtual_cpu_devices": on_cpu,
                    "args": {k: v for k, v in vars(args).items() if k != "worker"},
                    "results": results,
                },
                indent=1,
            )
            + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
