"""Convert the official latent-transformer checkpoints to a jaxedit editors directory (no torch).

Inputs (docs/method.md, layouts in tests/fixtures/latent_transformer/official_manifest.json):

- `latent_classifier_epoch_20.pth`: the `LCNet` state dict `fcs.{i}.weight` [out, in] and
  `fcs.{i}.bias` [out]; officially [9216, 2048, 512, 40] (W+ 18 x 512 flattened in, 40 logits out).
- `tnet_<k>.pth.tar` (k = CelebA attribute index): the `F_mapping` state dict `dense.{l}.weight`
  [512, 512] and `dense.{l}.bias` [512], one equalized-lr linear map per W+ layer l (18 officially).

Mapping to our params (`jaxedit.latent.modules`):

    fcs.{i}.weight [out, in]  -> classifier fc_{i}.kernel [in, out] (transposed); fcs.{i}.bias -> fc_{i}.bias
    dense.{l}.weight [out, in] -> transformer kernel[l] [in, out] (transposed, still unscaled);
    dense.{l}.bias            -> transformer bias[l]

The number of W+ layers is read from the tnets (or from the classifier's input width / 512 when no
tnet is given) and the classifier's hidden widths from its weights; the result is the `official`
preset with those sizes (exactly `PRESETS["official"]` for the real files). The output directory
is written by `jaxedit.latent.editors.save_editors`, the same as training writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange

from jaxedit.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from jaxedit.errors import CheckpointError, ConfigError, sanitize
from jaxedit.io import sha256_file
from jaxedit.latent.presets import PRESETS, MethodPreset
from jaxedit.latent.provenance import make_provenance, official_note
from jaxedit.stylegan2.config import MAX_DIM, MAX_RESOLUTION

TNET_FILE = re.compile(r"^tnet_(\d+)\.pth(?:\.tar)?$")
SOURCE_FORMAT = "official latent-transformer (LCNet state dict + F_mapping state dicts)"
MAX_NUM_WS = 2 * (MAX_RESOLUTION.bit_length() - 1) - 2  # W+ layers of the largest generator (22)
MAX_WIDTH = MAX_NUM_WS * MAX_DIM  # widest classifier layer (a flattened W+ latent)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (value.shape if hasattr(value, "shape") else np.shape(value)))


def _layer_count(where: str, shapes: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    """n for keys exactly {prefix.i.weight, prefix.i.bias : i < n}; one-line error otherwise."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d{{1,6}})\.(weight|bias)$")
    indices = set()
    for key in shapes:
        match = pattern.match(key)
        if not match:
            raise CheckpointError(
                f"{where}: unexpected key {sanitize(repr(key), 120)} (expected only {prefix}.<i>.weight / {prefix}.<i>.bias)"
            )
        indices.add(int(match.group(1)))
    if not indices:
        raise CheckpointError(f"{where}: no {prefix}.<i>.weight keys (is this the right file?)")
    count = max(indices) + 1
    for i in range(count):
        for part in ("weight", "bias"):
            if f"{prefix}.{i}.{part}" not in shapes:
                raise CheckpointError(f"{where}: missing key {prefix}.{i}.{part}")
    return count


def classifier_layout(shapes: Mapping[str, tuple[int, ...]], where: str = "classifier") -> tuple[int, ...]:
    """Widths (in, *hidden, 40) of an LCNet state dict given as {key: shape}; checks every key."""
    count = _layer_count(where, shapes, "fcs")
    widths: list[int] = []
    for i in range(count):
        weight, bias = tuple(shapes[f"fcs.{i}.weight"]), tuple(shapes[f"fcs.{i}.bias"])
        if len(weight) != 2:
            raise CheckpointError(f"{where}: fcs.{i}.weight has shape {list(weight)}, expected [out, in]")
        out_width, in_width = weight
        if i == 0:
            widths.append(in_width)
        elif in_width != widths[-1]:
            raise CheckpointError(
                f"{where}: fcs.{i}.weight has shape {list(weight)}, expected [*, {widths[-1]}] (the output of fcs.{i - 1})"
            )
        if bias != (out_width,):
            raise CheckpointError(f"{where}: fcs.{i}.bias has shape {list(bias)}, expected [{out_width}]")
        if not 1 <= out_width <= MAX_WIDTH or not 1 <= in_width <= MAX_WIDTH:
            raise CheckpointError(f"{where}: fcs.{i}.weight has shape {list(weight)}, widths must be 1..{MAX_WIDTH}")
        widths.append(out_width)
    if widths[-1] != NUM_ATTRIBUTES:
        raise CheckpointError(
            f"{where}: fcs.{count - 1}.weight gives {widths[-1]} outputs, expected {NUM_ATTRIBUTES} attribute logits"
        )
    return tuple(widths)


def tnet_layout(shapes: Mapping[str, tuple[int, ...]], where: str = "tnet") -> tuple[int, int]:
    """(num_ws, w_dim) of an F_mapping state dict given as {key: shape}; checks every key."""
    count = _layer_count(where, shapes, "dense")
    if count > MAX_NUM_WS:
        raise CheckpointError(f"{where}: {count} dense layers (one per W+ layer), expected at most {MAX_NUM_WS}")
    w_dim = None
    for layer in range(count):
        weight, bias = tuple(shapes[f"dense.{layer}.weight"]), tuple(shapes[f"dense.{layer}.bias"])
        if w_dim is None:
            if len(weight) != 2 or weight[0] != weight[1]:
                raise CheckpointError(
                    f"{where}: dense.{layer}.weight has shape {list(weight)}, expected square [w_dim, w_dim]"
                )
            w_dim = weight[0]
            if not 1 <= w_dim <= MAX_DIM:
                raise CheckpointError(
                    f"{where}: dense.{layer}.weight has shape {list(weight)}, w_dim must be 1..{MAX_DIM}"
                )
        if weight != (w_dim, w_dim):
            raise CheckpointError(
                f"{where}: dense.{layer}.weight has shape {list(weight)}, expected [{w_dim}, {w_dim}]"
            )
        if bias != (w_dim,):
            raise CheckpointError(f"{where}: dense.{layer}.bias has shape {list(bias)}, expected [{w_dim}]")
    return count, int(w_dim)


def _state_dict(obj: Any, where: str) -> dict[str, np.ndarray]:
    """The flat {key: array} of a loaded checkpoint (a bare state dict, or one under 'state_dict')."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where}: expected a state dict, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        name = str(key)
        if name.startswith("module."):  # saved from a DataParallel wrapper
            name = name[len("module.") :]
        if not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{where}: entry {sanitize(repr(name), 120)} is a {type(value).__name__}, expected a tensor"
            )
        if not np.issubdtype(np.asarray(value).dtype, np.floating) and value.dtype.name != "bfloat16":
            raise CheckpointError(
                f"{where}: tensor {sanitize(repr(name), 120)} has dtype {value.dtype}, expected floating point"
            )
        if not np.all(np.isfinite(np.asarray(value, np.float32))):
            raise CheckpointError(
                f"{where}: tensor {sanitize(repr(name), 120)} contains non-finite values (or values beyond float32)"
            )
        out[name] = value
    return out


def classifier_params_from_state_dict(
    state: Mapping[str, np.ndarray], where: str = "classifier"
) -> tuple[dict, tuple[int, ...]]:
    """(our classifier params, widths) from an LCNet state dict."""
    widths = classifier_layout({k: _shape(v) for k, v in state.items()}, where)
    params = {
        f"fc_{i}": {
            "kernel": np.ascontiguousarray(np.asarray(state[f"fcs.{i}.weight"], np.float32).T),
            "bias": np.asarray(state[f"fcs.{i}.bias"], np.float32),
        }
        for i in range(len(widths) - 1)
    }
    return params, widths


def transformer_params_from_state_dict(state: Mapping[str, np.ndarray], where: str = "tnet") -> tuple[dict, int, int]:
    """(our official-transformer params, num_ws, w_dim) from an F_mapping state dict."""
    num_ws, w_dim = tnet_layout({k: _shape(v) for k, v in state.items()}, where)
    kernel = rearrange(
        [np.asarray(state[f"dense.{layer}.weight"], np.float32) for layer in range(num_ws)], "l o i -> l i o"
    )
    bias = np.stack([np.asarray(state[f"dense.{layer}.bias"], np.float32) for layer in range(num_ws)])
    return {"kernel": np.ascontiguousarray(kernel), "bias": bias}, num_ws, w_dim


def find_tnets(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(CelebA index, path) of every tnet_<k>.pth[.tar] in a directory, sorted by index."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory (expected the folder holding tnet_<k>.pth.tar files)")
    found: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        match = TNET_FILE.match(path.name)
        if not match:
            continue
        index = int(match.group(1))
        if not 0 <= index < NUM_ATTRIBUTES:
            raise ConfigError(f"{path}: attribute index {index} is out of range 0..{NUM_ATTRIBUTES - 1}")
        if index in found:
            raise ConfigError(f"{directory}: two files for attribute {index} ({found[index].name}, {path.name})")
        found[index] = path
    if not found:
        raise ConfigError(f"{directory}: no tnet_<k>.pth.tar files here")
    return sorted(found.items())


def official_preset_for(widths: Sequence[int], num_ws: int, w_dim: int) -> MethodPreset:
    """The official preset sized for these checkpoints (PRESETS['official'] for the real ones)."""
    if not 1 <= num_ws <= MAX_NUM_WS:
        raise CheckpointError(f"{num_ws} W+ layers, expected 1..{MAX_NUM_WS}")
    if widths[0] != num_ws * w_dim:
        raise CheckpointError(
            f"classifier takes {widths[0]} inputs but the transformers work on {num_ws} x {w_dim} = {num_ws * w_dim}"
        )
    base = PRESETS["official"]
    return base.replace(num_ws=num_ws, w_dim=w_dim, classifier_hidden=tuple(int(w) for w in widths[1:-1]))


def convert_latent_transformer(
    classifier_path: str | os.PathLike,
    destination: str | os.PathLike,
    tnets: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    overwrite: bool = False,
    generator: Any = None,
) -> Path:
    """Convert the official classifier (and, optionally, tnets) to an editors directory.

    tnets: a directory of `tnet_<k>.pth.tar` files, or a list of such files (k read from each
    name); None converts the classifier alone (K = 0 transformers; num_ws = inputs / 512).
    Nothing is written unless every file converts (the directory is written atomically).
    Every size read from the files is bounded (W+ layers, widths) and every tensor checked finite
    as float32 before anything is built; anything wrong is a one-line CheckpointError.
    generator: the loaded generator (`load_generator`) the editors are for: its identity is recorded
    in their provenance (`jaxedit.latent.provenance`) after its latents are checked against theirs;
    None records "generator unknown".
    """
    try:
        return _convert(classifier_path, destination, tnets, overwrite, generator)
    except RecursionError:
        raise CheckpointError(f"{classifier_path}: structure nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{classifier_path}: the networks it describes do not fit in memory") from None
    except OverflowError:
        raise CheckpointError(f"{classifier_path}: a number in the checkpoints is out of range") from None


def _convert(classifier_path, destination, tnets, overwrite, generator=None) -> Path:
    from jaxedit.convert.torch_reader import read_checkpoint
    from jaxedit.latent.editors import save_editors

    classifier_path = Path(classifier_path)
    where = str(classifier_path)
    classifier_params, widths = classifier_params_from_state_dict(
        _state_dict(read_checkpoint(classifier_path), where), where
    )
    source = {
        "path": str(classifier_path),
        "sha256": sha256_file(classifier_path),
        "format": SOURCE_FORMAT,
        "tnets": [],
    }

    if tnets is None:
        files: list[tuple[int, Path]] = []
    elif isinstance(tnets, (str, os.PathLike)) and Path(tnets).is_dir():
        files = find_tnets(tnets)
    else:
        paths = [Path(tnets)] if isinstance(tnets, (str, os.PathLike)) else [Path(p) for p in tnets]
        files = []
        for path in paths:
            if not path.exists():
                raise ConfigError(
                    f"{path}: no such file or directory (expected tnet_<k>.pth.tar files or their folder)"
                )
            match = TNET_FILE.match(path.name)
            if not match:
                raise ConfigError(f"{path}: expected a file named tnet_<attribute index>.pth.tar")
            files.append((int(match.group(1)), path))
        files.sort()

    transformer_params = []
    layout = None
    for index, path in files:
        params, num_ws, w_dim = transformer_params_from_state_dict(
            _state_dict(read_checkpoint(path), str(path)), str(path)
        )
        if layout is None:
            layout = (num_ws, w_dim)
        elif (num_ws, w_dim) != layout:
            raise CheckpointError(
                f"{path}: {num_ws} layers of {w_dim}, but {files[0][1].name} has {layout[0]} of {layout[1]}"
            )
        transformer_params.append(params)
        source["tnets"].append({"path": str(path), "sha256": sha256_file(path), "attribute": ATTRIBUTES[index]})

    if layout is None:
        w_dim = PRESETS["official"].w_dim
        if widths[0] % w_dim:
            raise CheckpointError(
                f"{where}: classifier input width {widths[0]} is not a multiple of {w_dim} (W+ layers of {w_dim})"
            )
        layout = (widths[0] // w_dim, w_dim)
    preset = official_preset_for(widths, *layout)
    stacked = (
        {key: np.stack([p[key] for p in transformer_params]) for key in ("kernel", "bias")}
        if transformer_params
        else None
    )
    training = {"origin": "converted", "source_format": SOURCE_FORMAT}
    if generator is not None and (generator.num_ws, generator.w_dim) != tuple(preset.latent_shape):
        raise ConfigError(
            f"{where}: the editors work on W+ {list(preset.latent_shape)} latents, the generator on "
            f"W+ [{generator.num_ws}, {generator.w_dim}]: they were not made for it"
        )
    provenance = make_provenance(
        preset, origin="converted", generator=generator, note=None if generator else official_note(preset.latent_shape)
    )
    return save_editors(
        destination,
        preset,
        classifier_params,
        stacked,
        [ATTRIBUTES[index] for index, _ in files],
        training=training,
        source=source,
        overwrite=overwrite,
        provenance=provenance,
    )
