"""One line of `--help` for every field that becomes a flag (`jaxedit.cli.types.add_config_flags`).

`RUN_HELP`: `jaxedit.training.configs.TrainConfig` (the stage commands' run fields);
`METHOD_HELP`: `jaxedit.latent.presets.MethodPreset` (the method fields, also `--set FIELD=VALUE`);
`WORLD_HELP`: the synthetic world's fields of `jaxedit.training.pipeline.PipelineSettings`.
Their docstrings say the same at length.
"""

from __future__ import annotations

RUN_HELP = {
    "data": "files (--latents, --labels) or synthetic (the embedded world)",
    "latents": "latents .npy [N, *latent_shape] (or an .npz holding latents and labels)",
    "labels": "labels .npy [N, 40], 0/1 or -1/1",
    "synthetic_samples": "latents of the embedded world (with --data synthetic)",
    "synthetic_seed": "seed of the embedded world's latents (with --data synthetic)",
    "seed": "seed of the initial params and of the data order (a resumed run ends bit-identical)",
    "steps_per_call": "update steps per compiled call; signals and checkpoints act between calls",
    "checkpoint_every": "save every this many steps (0: off)",
    "checkpoint_seconds": "save every this many seconds (0: off)",
    "keep_checkpoints": "how many recent checkpoints to keep",
    "max_steps": "stop after this many steps (0: the full schedule)",
    "attributes": "transformers to train: CelebA names or indices, comma-separated, or all",
    "classifier": "a classifier workdir or any editors directory (default: WORKDIR/classifier)",
    "progress": "progress bars on stderr (shown only on a terminal)",
    "mesh_attributes": "devices the transformers are split over (0: all devices not used by --mesh_data)",
    "mesh_data": "devices each batch is split over",
    "distributed": "join a multi-process run first (jax.distributed.initialize)",
    "coordinator_address": "host:port of process 0 (with --distributed; empty: detected on TPU pods, SLURM, MPI)",
    "num_processes": "processes in the run (with --distributed; 0: detected)",
    "process_id": "this process's index (with --distributed; -1: detected)",
}

METHOD_HELP = {
    "space": "latent space: w ([B, w_dim]) or w+ ([B, num_ws, w_dim])",
    "num_ws": "W+ layers (with space w+)",
    "w_dim": "width of one style vector",
    "num_attributes": "attributes the classifier reads (the 40 of CelebA)",
    "classifier_hidden": "hidden layer widths of the classifier C",
    "classifier_activation": "relu or leaky_relu between C's layers",
    "classifier_negative_slope": "slope of C's leaky_relu",
    "transformer_kind": "paper (w + a * H(w), H an MLP) or official (one linear map per W+ layer)",
    "transformer_hidden": "hidden width of H (transformer_kind paper)",
    "transformer_negative_slope": "slope of H's LeakyReLU (transformer_kind paper)",
    "loss_kind": "paper or official losses (jaxedit.latent.losses)",
    "class_weight": "weight of the classification loss",
    "attribute_weight": "weight of the attribute-preservation loss",
    "recon_weight": "weight of the reconstruction loss",
    "recon_form": "mse (mean squared error, the authors' code) or norm (the paper's literal unsquared norm)",
    "corr_threshold": "|correlation| from which another attribute counts as fully correlated (not preserved)",
    "lr": "transformer learning rate (Adam)",
    "beta1": "transformer Adam beta1",
    "beta2": "transformer Adam beta2",
    "eps": "transformer Adam epsilon",
    "weight_decay": "transformer weight decay (added to the gradient, as torch.optim.Adam)",
    "batch_size": "transformer batch size",
    "epochs": "transformer epochs",
    "classifier_lr": "classifier learning rate (Adam)",
    "classifier_weight_decay": "classifier weight decay (added to the gradient)",
    "classifier_batch_size": "classifier batch size",
    "classifier_epochs": "classifier epochs",
    "classifier_decay_epochs": "epochs after which the classifier's learning rate decays",
    "classifier_lr_decay": "factor of that decay",
    "train_fraction": "share of the samples that train (the rest are held out)",
    "edit_alpha_range": "edit strengths meant for editing, LOW,HIGH (training draws |alpha| <= 1)",
    "table_alpha": "our strength in the paper's Table 1",
    "edit_layers": "W+ layers that take an edit, FIRST,STOP half-open (none: all)",
}

WORLD_HELP = {
    "w_dim": "latent width of the synthetic world's mapping network",
    "z_dim": "input width of the synthetic world's mapping network",
    "mapping_layers": "layers of the synthetic world's mapping network",
}
