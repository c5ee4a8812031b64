"""Why a preset does or does not edit: transformers retrained epoch by epoch, measured after each.

    python -m train --out RUN_DIR                          # trains the classifier C (and the editors)
    python bench/edit_diagnostics.py --run RUN_DIR [--set recon_form=norm] [--attributes Young,Male]

Takes the run's preset, its classifier C and its SYNTHETIC world (`jaxedit.data.synthetic`, a
stand-in for "render, then annotate"), samples the training latents as `python -m train` does (the
first `--transformer-samples` of the labelled latents), trains one transformer per attribute with
the preset's loss, optimizer, batch size and epochs (`--set FIELD=VALUE` changes preset fields;
every change is printed and recorded), and after every epoch measures on `--count` fresh latents:

- `c_flip`: the share of edits at alpha 1.25 (signed to reverse C's own decision) that flip C;
- `accuracy`: the share of edits at alpha 1.25 (signed to reverse the world's label) that flip the
  world's label: the paper's classification accuracy;
- `kept`: attribute preservation (other world labels unchanged, over flipped edits);
- `move`: mean ||T(w) - w|| (W units) and `in_subspace`: the share of ||T(w) - w||^2 inside the
  world's attribute subspace (the moves that can change labels; the rest changes identity only).
  W+: both of the move's mean over the layer group the attribute reads (as the world reads it),
  and `on_read_layers`: the share of the move's ||T(w) - w||^2 that lies on those layers;
- the training loss terms, averaged over the epoch;
- once: the share of InterFaceGAN's normal (fitted as the evaluation fits it) in that subspace.

Prints a Markdown table and writes `--out` (JSON, default RUN_DIR/edit_diagnostics.json).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def subspace_basis(world) -> np.ndarray:
    """Orthonormal basis [w_dim, P] of the world's attribute subspace (the span of its PCA projection)."""
    q, _ = np.linalg.qr(np.asarray(world.params["attr_proj"], np.float64))
    return q


def interfacegan_subspace_shares(latents, probabilities, basis, names, key) -> dict[str, float]:
    """Per attribute, the share of InterFaceGAN's unit normal (fitted as the evaluation fits it)
    inside the world's attribute subspace: ||P n||^2 (W: the normal itself; W+: its layer mean)."""
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.eval.baselines import fit_interfacegan

    normals = np.asarray(fit_interfacegan(latents, probabilities, key).normals, np.float64)
    if latents.ndim == 3:
        normals = normals.reshape(len(normals), latents.shape[1], latents.shape[2]).mean(axis=1)
    shares = {}
    for name in names:
        n = normals[ATTRIBUTES.index(name)]
        shares[name] = float(np.sum((n @ basis) ** 2) / np.sum(n**2))
    return shares


def _value(text: str):
    """A --set value: a Python literal (1, 1e-3, (64, 32), None) or else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run(args: argparse.Namespace) -> dict:
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.data import synthetic
    from jaxedit.eval.suite import synthetic_world_for
    from jaxedit.latent import load_editors
    from jaxedit.latent.losses import correlation_matrix
    from jaxedit.training.steps import TransformerTrainer, slot

    started = time.perf_counter()
    editors = load_editors(Path(args.run) / "editors")
    world = synthetic_world_for(editors)
    changes = {field: _value(text) for field, text in (item.split("=", 1) for item in args.set)}
    preset = editors.preset.replace(**changes)
    names = args.attributes.split(",")
    indices = jnp.asarray([ATTRIBUTES.index(n) for n in names], jnp.int32)
    space = preset.space
    key = jax.random.key(args.seed)
    latents = np.asarray(synthetic.sample_latents(world, jax.random.fold_in(key, 11), args.samples, space=space))
    label = synthetic.labeller(world)
    probabilities = np.concatenate([np.asarray(label(latents[i : i + 8192])) for i in range(0, len(latents), 8192)])
    labels = probabilities > 0.5
    correlation = correlation_matrix(labels.astype(np.float32))
    train = jnp.asarray(latents[: args.transformer_samples])
    fresh = jnp.asarray(synthetic.sample_latents(world, jax.random.fold_in(key, 99), args.count, space=space))
    labels0 = np.asarray(label(fresh)) > 0.5
    basis = subspace_basis(world)
    interfacegan = interfacegan_subspace_shares(latents, probabilities, basis, names, jax.random.fold_in(key, 7))

    trainer = TransformerTrainer.create(preset)
    scan = jax.jit(trainer.scan, donate_argnums=0)
    state = trainer.init(jax.random.fold_in(key, 5), len(names))
    classifier_params = editors.classifier_params
    logits_fresh = np.asarray(trainer.classifier.apply({"params": classifier_params}, fresh))
    steps_per_epoch = args.transformer_samples // preset.batch_size
    apply_t = jax.jit(lambda p, w, a: trainer.transformer.apply({"params": p}, w, a))
    mask = preset.edit_layer_mask()
    groups = synthetic.layer_groups(fresh.shape[1]) if fresh.ndim == 3 else None

    def edit(params, sign):
        alpha = jnp.asarray(sign * args.alpha, jnp.float32)
        edited = apply_t(params, fresh, alpha)
        if mask is not None:  # W+ layers outside the preset's edit range keep the input's values
            keep = jnp.asarray(mask)[None, :, None]
            edited = jnp.where(keep, edited, fresh)
        return edited

    rows = []
    for epoch in range(preset.epochs):
        order = jax.random.permutation(jax.random.fold_in(key, 1000 + epoch), args.transformer_samples)
        batches = order[: steps_per_epoch * preset.batch_size].reshape(steps_per_epoch, preset.batch_size)
        state, metrics = scan(state, classifier_params, correlation, indices, train, batches)
        losses = {k: np.asarray(v).mean(axis=0) for k, v in metrics.items()}
        for k, name in enumerate(names):
            j = ATTRIBUTES.index(name)
            params = slot(state.params, k)
            sign = np.where(labels0[:, j], -1.0, 1.0).astype(np.float32)
            edited = edit(params, sign)
            labels1 = np.asarray(label(edited)) > 0.5
            flipped = labels1[:, j] != labels0[:, j]
            others = np.ones(len(ATTRIBUTES), bool)
            others[j] = False
            kept = float(np.mean(labels1[flipped][:, others] == labels0[flipped][:, others])) if flipped.any() else 0.0
            c_positive = logits_fresh[:, j] > 0
            c_edited = edit(params, np.where(c_positive, -1.0, 1.0).astype(np.float32))
            c_after = np.asarray(trainer.classifier.apply({"params": classifier_params}, c_edited))[:, j] > 0
            delta = np.asarray(edited - fresh, np.float64)
            on_read_layers = None
            if delta.ndim == 3:  # W+: the mean of the layer group this attribute reads
                first, stop = groups[int(world.params["group"][j])]
                per_layer = np.sum(delta**2, axis=2)
                on_read_layers = float(np.sum(per_layer[:, first:stop]) / max(np.sum(per_layer), 1e-12))
                delta = delta[:, first:stop].mean(axis=1)
            inside = np.sum((delta @ basis) ** 2, axis=1)
            total = np.sum(delta**2, axis=1)
            rows.append(
                {
                    "epoch": epoch + 1,
                    "attribute": name,
                    "c_flip": float(np.mean(c_after != c_positive)),
                    "accuracy": float(np.mean(flipped)),
                    "kept": kept,
                    "move": float(np.mean(np.sqrt(total))),
                    "in_subspace": float(np.sum(inside) / max(np.sum(total), 1e-12)),
                    **({} if on_read_layers is None else {"on_read_layers": on_read_layers}),
                    **{f"loss_{term}": float(values[k]) for term, values in losses.items()},
                }
            )
            print(_format_row(rows[-1]), file=sys.stderr, flush=True)
    return {
        "settings": {
            "run": str(args.run),
            "preset": preset.to_dict(),
            "changes": changes,
            "attributes": names,
            "alpha": args.alpha,
            "count": args.count,
            "samples": args.samples,
            "transformer_samples": args.transformer_samples,
            "seed": args.seed,
            "world": world.describe(),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "rows": rows,
        "interfacegan_normal_in_subspace": interfacegan,
    }


HEADER = (
    "| epoch | attribute | C flipped | accuracy (world) | attributes kept | mean move | share in attribute subspace "
    "| loss: class / attribute / recon | training flip rate (C) | W+: share of the move on the layers read |"
)


def _format_row(row: dict) -> str:
    return (
        f"| {row['epoch']} | {row['attribute']} | {100 * row['c_flip']:.1f} | {100 * row['accuracy']:.1f} "
        f"| {100 * row['kept']:.1f} | {row['move']:.2f} | {100 * row['in_subspace']:.1f} "
        f"| {row.get('loss_class', float('nan')):.3f} / {row.get('loss_attribute', float('nan')):.3f} / "
        f"{row.get('loss_recon', float('nan')):.4f} | {100 * row.get('loss_flip_rate', float('nan')):.1f} "
        f"| {100 * row.get('on_read_layers', float('nan')):.1f} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a `python -m train` run directory (its editors/ and world)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a preset field")
    parser.add_argument("--attributes", default="Young,Eyeglasses,Male,Smiling")
    parser.add_argument("--alpha", type=float, default=1.25)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50_000, help="labelled latents (the correlation is theirs)")
    parser.add_argument("--transformer-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="JSON path (default RUN_DIR/edit_diagnostics[-changes].json)")
    args = parser.parse_args(argv)
    result = run(args)
    print(f"{result['settings']['preset']['name']} preset, changes {result['settings']['changes'] or 'none'}:")
    print(HEADER)
    print("|" + "---|" * 10)
    for row in result["rows"]:
        print(_format_row(row))
    print(
        "InterFaceGAN's normal, share inside the attribute subspace: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["interfacegan_normal_in_subspace"].items())
    )
    suffix = "".join(f"-{k}={v}" for k, v in result["settings"]["changes"].items())
    out = Path(args.out or Path(args.run) / f"edit_diagnostics{suffix}.json")
    from jaxedit.io import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"written {out} in {result['settings']['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
