"""Benchmark: how the CPU work of `python -m train` uses the cores (XLA threading vs host devices).

    python bench/threads.py [--variants default,one-thread,eigen-2,devices-2] [--steps 200] [--json out.json]
    python bench/threads.py --watch PID [--interval 10] [--json out.json]   # a running `python -m train`

Each variant runs in its own process (XLA reads its flags once, at start-up) on the same fixed
slice of the pipeline, with full-size paper-preset modules (W, 512):

- `transformers`: all 40 transformers trained at once (`transformer_chunks`, the training loop's
  program: batch 16, 50 steps per call in a `lax.scan`), `--steps` steps after a compiled warm-up;
- `classifier`: the latent classifier's training (`classifier_chunks`, batch 256, 50 steps per
  call), `--steps` steps;
- `labelling`: the synthetic world's labeller and identity embedder on `--label-count` latents in
  chunks of 1000 (what the evaluation does for every method, attribute and sweep point).

Variants (`XLA_FLAGS` of the child process):

- `default`: no flags;
- `one-thread`: `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`;
- `eigen-2`: `--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2`;
- `devices-2`: `--xla_force_host_platform_device_count=2`: two host devices, the 40 transformers
  split over them on the "attr" mesh axis (`jaxedit.training.sharding.make_mesh(2, 1)`), the
  classifier's batch on the "data" axis (`make_mesh(1, 2)`); labelling is not sharded.

For every slice it records wall time and CPU time (user + system of the child process, all
threads), their ratio (`cores busy`: 1.0 = one core's worth of work, 2.0 = both cores), and how
the CPU time spread over the process's threads (/proc/self/task: the busiest thread's share, and
how many threads did at least 10% of it). On a shared machine other jobs stretch the wall time
and cap the ratio, but not the spread: a slice whose busiest thread does ~100% of the work could
never use a second core, one at ~50% spread over two. Rows of all variants are printed as a
Markdown table and written to `--json`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "default": "",
    "one-thread": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "eigen-2": "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2",
    "devices-2": "--xla_force_host_platform_device_count=2",
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _thread_ticks(pid: str = "self") -> dict[str, int]:
    """CPU clock ticks (user + system) of every thread of process `pid`, from /proc (Linux)."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            ticks[task.name] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks


def _timed(fn, *args):
    """(result, wall s, cpu s, per-thread tick deltas) of fn(*args), blocking on its JAX outputs."""
    import jax

    before, wall, cpu = _thread_ticks(), time.perf_counter(), _cpu_seconds()
    out = jax.block_until_ready(fn(*args))
    wall, cpu, after = time.perf_counter() - wall, _cpu_seconds() - cpu, _thread_ticks()
    deltas = {tid: after[tid] - before.get(tid, 0) for tid in after}
    return out, wall, cpu, deltas


def _add_ticks(total: dict, deltas: dict) -> dict:
    for tid, value in deltas.items():
        total[tid] = total.get(tid, 0) + value
    return total


def _thread_summary(ticks: dict) -> dict:
    """How the CPU time spread over threads: the busiest thread's share and the number of threads
    that did at least 10% of the work. Robust to other jobs on the machine (which only stretch the
    wall time): one thread doing ~100% means the work could never use a second core."""
    busy = sorted((v for v in ticks.values() if v > 0), reverse=True)
    total = sum(busy)
    if not total:
        return {"busiest_thread_share": None, "threads_over_10pct": 0}
    return {"busiest_thread_share": busy[0] / total, "threads_over_10pct": sum(v >= 0.1 * total for v in busy)}


def worker(args: argparse.Namespace) -> dict:
    """One variant's measurements (runs in the child process)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jaxedit.data import synthetic
    from jaxedit.latent.losses import correlation_matrix
    from jaxedit.latent.presets import get_preset
    from jaxedit.training import sharding
    from jaxedit.training.classifier import classifier_chunks
    from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer
    from jaxedit.training.transformers import initial_state, transformer_chunks

    devices = jax.devices()
    preset = get_preset("paper")
    chunk = 50
    calls = max(1, args.steps // chunk)
    world = synthetic.build_world(synthetic.WorldConfig(seed=0, calibration_samples=4000))
    latents = np.asarray(synthetic.sample_latents(world, jax.random.key(1), 4000))
    labels = (np.asarray(synthetic.attribute_probabilities(world, latents)) > 0.5).astype(np.float32)
    rng = np.random.default_rng(0)
    rows = {}

    # classifier: data-parallel over every device ("data" axis), as `train_classifier` runs on a mesh
    trainer_c = ClassifierTrainer.create(preset, steps_per_epoch=len(latents) // preset.classifier_batch_size)
    mesh_c = sharding.make_mesh(1, len(devices))
    state_c = sharding.place(trainer_c.init(jax.random.key(2)), sharding.replicated(mesh_c))
    advance_c = classifier_chunks(trainer_c, mesh_c, latents, labels)
    indices_c = [
        rng.integers(0, len(latents), (chunk, preset.classifier_batch_size)).astype(np.int32) for _ in range(calls + 1)
    ]
    state_c, _ = advance_c(state_c, indices_c[0])  # compile + warm up
    jax.block_until_ready(state_c)
    wall = cpu = 0.0
    ticks: dict = {}
    for idx in indices_c[1:]:
        (state_c, _), w, c, t = _timed(advance_c, state_c, idx)
        wall, cpu, ticks = wall + w, cpu + c, _add_ticks(ticks, t)
    rows["classifier"] = {"steps": calls * chunk, "wall_s": wall, "cpu_s": cpu, **_thread_summary(ticks)}
    classifier_params = jax.tree.map(np.asarray, state_c.params)

    # transformers: the 40 attributes split over every device ("attr" axis), as `train_transformers`
    trainer_t = TransformerTrainer.create(preset)
    attributes = list(range(40))
    mesh_t = sharding.make_mesh(len(devices), 1)
    state_t = sharding.place_per_attribute(initial_state(trainer_t, 0, attributes), mesh_t)
    correlation = correlation_matrix(jnp.asarray(labels))
    advance_t = transformer_chunks(trainer_t, mesh_t, state_t, classifier_params, correlation, attributes, latents)
    indices_t = [rng.integers(0, len(latents), (chunk, preset.batch_size)).astype(np.int32) for _ in range(calls + 1)]
    state_t, _ = advance_t(state_t, indices_t[0])
    jax.block_until_ready(state_t)
    wall = cpu = 0.0
    ticks = {}
    for idx in indices_t[1:]:
        (state_t, _), w, c, t = _timed(advance_t, state_t, idx)
        wall, cpu, ticks = wall + w, cpu + c, _add_ticks(ticks, t)
    rows["transformers"] = {"steps": calls * chunk, "wall_s": wall, "cpu_s": cpu, **_thread_summary(ticks)}

    # labelling (the evaluation's inner loop)
    label, embed = synthetic.labeller(world), synthetic.identity_embedder(world)
    fresh = np.asarray(synthetic.sample_latents(world, jax.random.key(4), args.label_count))
    jax.block_until_ready((label(fresh[:1000]), embed(fresh[:1000])))

    def label_all(x):
        return [(label(x[i : i + 1000]), embed(x[i : i + 1000])) for i in range(0, len(x), 1000)]

    _, wall, cpu, ticks = _timed(label_all, fresh)
    rows["labelling"] = {"latents": args.label_count, "wall_s": wall, "cpu_s": cpu, **_thread_summary(ticks)}
    return {"devices": [str(d) for d in devices], "rows": rows}


def _runnable_threads(pid: str) -> int:
    """How many threads of `pid` are running or waiting for a core right now (state R)."""
    count = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            count += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return count


def watch(pid: int, interval: float, poll: float = 0.02) -> list[dict]:
    """Sample process `pid` every `interval` s until it ends: per interval, its CPU seconds, the
    busiest thread's share of them, the threads doing >= 10%, and (polled every `poll` s) the
    share of polls with two or more threads runnable at once: work that two cores could run in
    parallel, whatever other jobs the machine has (printed as they come)."""
    tick = os.sysconf("SC_CLK_TCK")
    samples, before = [], _thread_ticks(str(pid))
    started = time.perf_counter()
    while Path(f"/proc/{pid}").exists():
        polls = parallel = 0
        until = time.perf_counter() + interval
        while time.perf_counter() < until and Path(f"/proc/{pid}").exists():
            parallel += _runnable_threads(str(pid)) >= 2
            polls += 1
            time.sleep(poll)
        after = _thread_ticks(str(pid))
        if not after:
            break
        deltas = {tid: after[tid] - before.get(tid, 0) for tid in after}
        before = after
        row = {"t": round(time.perf_counter() - started, 1), "cpu_s": sum(deltas.values()) / tick}
        row.update(_thread_summary(deltas))
        row["two_runnable_share"] = parallel / max(polls, 1)
        samples.append(row)
        print(json.dumps(row), flush=True)
    return samples


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per slice (multiple of 50)")
    parser.add_argument("--label-count", type=int, default=40_000)
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--watch", type=int, default=0, metavar="PID", help="instead: sample a running process's thread spread"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="--watch sampling interval, seconds")
    args = parser.parse_args(argv)
    if args.watch:
        samples = watch(args.watch, args.interval)
        if args.json:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from jaxedit.io import atomic_write_text

            atomic_write_text(args.json, json.dumps({"pid": args.watch, "samples": samples}, indent=2) + "\n")
        return 0
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0
    results = []
    for name in args.variants.split(","):
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        if VARIANTS[name]:
            env["XLA_FLAGS"] = VARIANTS[name]
        command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps)]
        command += ["--label-count", str(args.label_count)]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(f"{name}: failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        result = json.loads(line[len("RESULT ") :])
        result.update(variant=name, xla_flags=VARIANTS[name], process_wall_s=time.perf_counter() - started)
        results.append(result)
        print(f"{name}: done in {result['process_wall_s']:.0f} s", file=sys.stderr, flush=True)
    print(
        "| variant | slice | work | wall s | CPU s (user + sys) | cores busy (CPU / wall) "
        "| busiest thread's share of the CPU time | threads doing >= 10% |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        for slice_name, row in result["rows"].items():
            work = f"{row['steps']} steps" if "steps" in row else f"{row['latents']} latents"
            print(
                f"| {result['variant']} | {slice_name} | {work} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} "
                f"| {row['cpu_s'] / max(row['wall_s'], 1e-9):.2f} | {_share(row.get('busiest_thread_share'))} "
                f"| {row.get('threads_over_10pct', '-')} |"
            )
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from jaxedit.io import atomic_write_text

        machine = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
        }
        atomic_write_text(args.json, json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
