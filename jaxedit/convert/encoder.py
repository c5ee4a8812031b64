"""Convert the official pSp / e4e encoder checkpoints to jaxedit encoder directories.

`psp_ffhq_encode.pt` and `e4e_ffhq_encode.pt` are `torch.save({'state_dict', 'opts', 'latent_avg'})`
files whose state dict holds the encoder (`encoder.*`) and the StyleGAN2 decoder (`decoder.*`,
rosinality layout). The file is read by `jaxedit.convert.torch_reader` (no torch, nothing from the
file executed); this module then

1. detects the encoder from `opts['encoder_type']`: 'GradualStyleEncoder' (pSp) or
   'Encoder4Editing' (e4e); anything else is refused in one line;
2. derives the architecture (`EncoderConfig`) from the tensor shapes: the stage boundaries (the
   units with a 1x1 conv shortcut), each stage's width and squeeze-excitation width by majority
   over the tensors that carry it (so one odd tensor is the one reported), the number of style
   heads and their width, and the input size (a head reading c3 has log2(input / 16) convs). The
   style count is cross-checked against the options: pSp saves `n_styles`, e4e only
   `stylegan_size` (n_styles = 2 log2(size) - 2); old pSp files may have only `output_size`;
3. checks every `encoder.*` key and shape against the layout that architecture implies (one line
   naming the key and the expected shape), refuses non-finite tensors, and checks `latent_avg`;
4. maps the tensors to our params (`jaxedit.encoders` layout, HWIO kernels) and writes the
   directory atomically with `jaxedit.modeldir.write_model_dir(..., kind="encoder")`.

The decoder is left alone: `jaxedit.convert.stylegan2.convert_stylegan2` reads the same file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange

from jaxedit.convert.stylegan2 import DEFAULT_OUTPUT_ROOT, check_layout
from jaxedit.encoders.config import COARSE_STYLES, MIDDLE_STYLES, NUM_STAGES, EncoderConfig
from jaxedit.encoders.loading import count_parameters
from jaxedit.errors import CheckpointError, ConfigError

ENCODER_TYPES = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}
PREFIX = "encoder."
IR_SE_50_UNITS = (3, 4, 14, 3)
NOT_AN_ENCODER = "not a pSp/e4e encoder"


@dataclasses.dataclass
class ConvertedEncoder:
    """The result of a conversion (before or after writing)."""

    format: str  # 'psp' | 'e4e'
    config: EncoderConfig
    params: dict  # {"encoder": module params, "latent_avg": [n_styles, w_dim]} numpy float32
    notes: list[str]
    decoder_tensors: int = 0  # decoder.* tensors in the file (not converted here)
    decoder_note: str | None = None  # how to convert that decoder (set by convert_encoder)
    path: Path | None = None

    @property
    def num_parameters(self) -> int:
        """Trainable encoder parameters (BatchNorm running statistics and latent_avg excluded)."""
        return count_parameters(self.params["encoder"])

    @property
    def n_styles(self) -> int:
        return self.config.n_styles

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def input_size(self) -> int:
        return self.config.input_size


# ------------------------------------------------------------------------------------------------
# Detection
# ------------------------------------------------------------------------------------------------


def _describe_keys(obj: Mapping, limit: int = 6) -> str:
    keys = [str(k) for k in obj.keys()]
    return "[" + ", ".join(repr(k) for k in keys[:limit]) + (", ...]" if len(keys) > limit else "]")


def detect_format(obj: Any, what: str = "checkpoint") -> str:
    """'psp' or 'e4e' for an object returned by the torch reader; CheckpointError otherwise."""
    expected = "expected {'state_dict': {'encoder.*': ...}, 'opts': {'encoder_type': ...}, 'latent_avg': ...}"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what}: {NOT_AN_ENCODER}: the file holds a {type(obj).__name__}; {expected}")
    state = obj.get("state_dict")
    if not isinstance(state, Mapping) or not any(str(k).startswith(PREFIX) for k in state):
        hint = " (this looks like a StyleGAN2 generator checkpoint: convert it as a generator)"
        hint = hint if _looks_like_generator(obj) else ""
        found = _describe_keys(state) if isinstance(state, Mapping) else _describe_keys(obj)
        where = "'state_dict' keys" if isinstance(state, Mapping) else "keys"
        raise CheckpointError(f"{what}: {NOT_AN_ENCODER}: {expected}; found {where} {found}{hint}")
    opts = obj.get("opts")
    encoder_type = opts.get("encoder_type") if isinstance(opts, Mapping) else None
    if encoder_type is None:
        raise CheckpointError(
            f"{what}: {NOT_AN_ENCODER}: opts['encoder_type'] is missing (expected 'GradualStyleEncoder' "
            "for pSp or 'Encoder4Editing' for e4e)"
        )
    if encoder_type not in ENCODER_TYPES:
        raise CheckpointError(
            f"{what}: encoder_type {str(encoder_type)[:80]!r} is not supported; expected 'GradualStyleEncoder' "
            "(pSp) or 'Encoder4Editing' (e4e)"
        )
    return ENCODER_TYPES[encoder_type]


def _looks_like_generator(obj: Mapping) -> bool:
    if "g_ema" in obj or "G_ema" in obj:
        return True
    state = obj.get("state_dict")
    return isinstance(state, Mapping) and any(str(k).startswith("decoder.") for k in state)


# ------------------------------------------------------------------------------------------------
# Architecture from shapes
# ------------------------------------------------------------------------------------------------


def _majority(votes: list[int]) -> int:
    counts: dict[int, int] = {}
    for v in votes:
        counts[v] = counts.get(v, 0) + 1
    best = max(counts.values())
    return next(v for v in votes if counts[v] == best)


def _dim(sd: Mapping, key: str, axis: int, ndim: int) -> list[int]:
    value = sd.get(PREFIX + key)
    if isinstance(value, np.ndarray) and value.ndim == ndim:
        return [int(value.shape[axis])]
    return []


def _vote(sd: Mapping, what: str, quantity: str, specs: list[tuple[str, int, int]]) -> int:
    votes = [v for key, axis, ndim in specs for v in _dim(sd, key, axis, ndim)]
    if not votes:
        raise CheckpointError(f"{what}: cannot tell the {quantity}: {PREFIX}{specs[0][0]} is missing or malformed")
    return _majority(votes)


def _indices(keys: list[str], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})


def infer_encoder_config(sd: Mapping[str, Any], kind: str, what: str) -> EncoderConfig:
    """The architecture implied by the shapes of the `encoder.*` tensors of a pSp / e4e state dict."""
    keys = [k[len(PREFIX) :] for k in sd]
    units = _indices(keys, r"body\.(\d+)\.")
    if not units:
        raise CheckpointError(f"{what}: {NOT_AN_ENCODER}: no backbone units ({PREFIX}body.*)")
    if not any(".res_layer.5." in k for k in keys):
        raise CheckpointError(
            f"{what}: backbone units without squeeze-excitation (mode 'ir') are not supported; expected 'ir_se' "
            f"units ({PREFIX}body.0.res_layer.5.fc1.weight ...)"
        )
    num_units = max(units) + 1
    starts = sorted({0, *_indices(keys, r"body\.(\d+)\.shortcut_layer\.")})
    if len(starts) != NUM_STAGES:
        if num_units != sum(IR_SE_50_UNITS):
            raise CheckpointError(
                f"{what}: expected {NUM_STAGES} backbone stages (a 1x1 conv shortcut starting stages 2-4), "
                f"found {len(starts)} among {num_units} units"
            )
        starts = [0, 3, 7, 21]  # IR-SE-50; a missing shortcut key is then reported by the layout check
    ends = starts[1:] + [num_units]
    stage_units = tuple(e - s for s, e in zip(starts, ends))

    def unit_votes(stage: int, specs: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        return [(f"body.{i}.{key}", axis, ndim) for i in range(starts[stage], ends[stage]) for key, axis, ndim in specs]

    depth_specs = [("res_layer.1.weight", 0, 4), ("res_layer.3.weight", 0, 4), ("res_layer.3.weight", 1, 4)]
    depth_specs += [("res_layer.2.weight", 0, 1), ("res_layer.4.weight", 0, 1)]
    se_specs = [("res_layer.5.fc1.weight", 0, 4), ("res_layer.5.fc2.weight", 1, 4)]
    stage_depths = tuple(
        _vote(sd, what, f"width of backbone stage {s + 1}", unit_votes(s, depth_specs)) for s in range(NUM_STAGES)
    )
    se_channels = tuple(
        _vote(sd, what, f"squeeze-excitation width of stage {s + 1}", unit_votes(s, se_specs))
        for s in range(NUM_STAGES)
    )
    stem_channels = _vote(
        sd,
        what,
        "input layer width",
        [("input_layer.0.weight", 0, 4), ("input_layer.1.weight", 0, 1), ("input_layer.2.weight", 0, 1)]
        + [("body.0.res_layer.0.weight", 0, 1), ("body.0.res_layer.1.weight", 1, 4)],
    )
    in_channels = _vote(sd, what, "number of input channels", [("input_layer.0.weight", 1, 4)])

    heads = _indices(keys, r"styles\.(\d+)\.")
    if not heads:
        raise CheckpointError(f"{what}: {NOT_AN_ENCODER}: no style heads ({PREFIX}styles.*)")
    n_styles = max(heads) + 1
    head_specs = [("linear.weight", 0, 2), ("linear.weight", 1, 2), ("linear.bias", 0, 1), ("convs.0.weight", 0, 4)]
    w_dim = _vote(
        sd, what, "style width (w_dim)", [(f"styles.{i}.{key}", a, n) for i in heads for key, a, n in head_specs]
    )
    depth_votes = []
    for i in heads:
        convs = _indices(keys, rf"styles\.{i}\.convs\.(\d+)\.weight$")
        extra = 0 if i < COARSE_STYLES else (1 if i < MIDDLE_STYLES else 2)
        if convs:
            depth_votes.append(len(convs) - extra)
    if not depth_votes or _majority(depth_votes) < 1:
        raise CheckpointError(f"{what}: cannot tell the input size: {PREFIX}styles.0.convs.* missing")
    input_size = 2 ** (_majority(depth_votes) + 4)
    try:
        return EncoderConfig(
            kind=kind,
            input_size=input_size,
            in_channels=in_channels,
            stem_channels=stem_channels,
            stage_depths=stage_depths,
            stage_units=stage_units,
            se_channels=se_channels,
            n_styles=n_styles,
            w_dim=w_dim,
        )
    except ConfigError as error:
        raise CheckpointError(f"{what}: unsupported encoder architecture ({error})") from None


def encoder_layout(config: EncoderConfig) -> dict[str, tuple]:
    """Every float key and shape of the reference encoder's `state_dict()` (with the `encoder.`
    prefix), in the reference order; `num_batches_tracked` entries are listed by `batch_norms`."""
    layout: dict[str, tuple] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{PREFIX}{prefix}.{name}"] = (c,)

    stem = config.stem_channels
    layout[f"{PREFIX}input_layer.0.weight"] = (stem, config.in_channels, 3, 3)
    bn("input_layer.1", stem)
    layout[f"{PREFIX}input_layer.2.weight"] = (stem,)
    for i, (cin, depth, _, se) in enumerate(config.unit_specs()):
        p = f"body.{i}"
        if cin != depth:
            layout[f"{PREFIX}{p}.shortcut_layer.0.weight"] = (depth, cin, 1, 1)
            bn(f"{p}.shortcut_layer.1", depth)
        bn(f"{p}.res_layer.0", cin)
        layout[f"{PREFIX}{p}.res_layer.1.weight"] = (depth, cin, 3, 3)
        layout[f"{PREFIX}{p}.res_layer.2.weight"] = (depth,)
        layout[f"{PREFIX}{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
        bn(f"{p}.res_layer.4", depth)
        layout[f"{PREFIX}{p}.res_layer.5.fc1.weight"] = (se, depth, 1, 1)
        layout[f"{PREFIX}{p}.res_layer.5.fc2.weight"] = (depth, se, 1, 1)
    width, w = config.feature_channels, config.w_dim
    for i in range(config.n_styles):
        for j in range(config.style_convs(i)):
            layout[f"{PREFIX}styles.{i}.convs.{2 * j}.weight"] = (w, width if j == 0 else w, 3, 3)
            layout[f"{PREFIX}styles.{i}.convs.{2 * j}.bias"] = (w,)
        layout[f"{PREFIX}styles.{i}.linear.weight"] = (w, w)
        layout[f"{PREFIX}styles.{i}.linear.bias"] = (w,)
    c1_depth, c2_depth = config.stage_depths[1], config.stage_depths[2]
    layout[f"{PREFIX}latlayer1.weight"] = (width, c2_depth, 1, 1)
    layout[f"{PREFIX}latlayer1.bias"] = (width,)
    layout[f"{PREFIX}latlayer2.weight"] = (width, c1_depth, 1, 1)
    layout[f"{PREFIX}latlayer2.bias"] = (width,)
    return layout


def batch_norms(config: EncoderConfig) -> list[str]:
    """The BatchNorm module prefixes (each has an int64 `num_batches_tracked`, unused in eval)."""
    norms = ["input_layer.1"]
    for i, (cin, depth, _, _) in enumerate(config.unit_specs()):
        if cin != depth:
            norms.append(f"body.{i}.shortcut_layer.1")
        norms += [f"body.{i}.res_layer.0", f"body.{i}.res_layer.4"]
    return [PREFIX + n for n in norms]


# ------------------------------------------------------------------------------------------------
# Tensors -> params
# ------------------------------------------------------------------------------------------------


def _f32(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float32, order="C")


def params_from_state_dict(sd: Mapping[str, np.ndarray], config: EncoderConfig) -> dict:
    """`encoder.*` tensors (layout already checked) -> the encoder module's params (float32 numpy)."""

    def t(key: str) -> np.ndarray:
        return sd[PREFIX + key]

    def conv(key: str) -> dict:
        return {"kernel": _f32(rearrange(t(key), "o i h w -> h w i o"))}

    def conv_bias(prefix: str) -> dict:
        return {**conv(f"{prefix}.weight"), "bias": _f32(t(f"{prefix}.bias"))}

    def bn(prefix: str) -> dict:
        names = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
        return {ours: _f32(t(f"{prefix}.{theirs}")) for ours, theirs in names.items()}

    backbone = {
        "input_layer": {
            "conv": conv("input_layer.0.weight"),
            "bn": bn("input_layer.1"),
            "prelu": {"slope": _f32(t("input_layer.2.weight"))},
        }
    }
    for i, (cin, depth, _, _) in enumerate(config.unit_specs()):
        p = f"body.{i}"
        unit = {
            "bn_in": bn(f"{p}.res_layer.0"),
            "conv1": conv(f"{p}.res_layer.1.weight"),
            "prelu": {"slope": _f32(t(f"{p}.res_layer.2.weight"))},
            "conv2": conv(f"{p}.res_layer.3.weight"),
            "bn_out": bn(f"{p}.res_layer.4"),
            "se": {
                "fc1": _f32(rearrange(t(f"{p}.res_layer.5.fc1.weight"), "o i 1 1 -> i o")),
                "fc2": _f32(rearrange(t(f"{p}.res_layer.5.fc2.weight"), "o i 1 1 -> i o")),
            },
        }
        if cin != depth:
            unit["shortcut_conv"] = conv(f"{p}.shortcut_layer.0.weight")
            unit["shortcut_bn"] = bn(f"{p}.shortcut_layer.1")
        backbone[f"unit_{i}"] = unit
    params = {"backbone": backbone, "latlayer1": conv_bias("latlayer1"), "latlayer2": conv_bias("latlayer2")}
    for i in range(config.n_styles):
        head = {f"conv_{j}": conv_bias(f"styles.{i}.convs.{2 * j}") for j in range(config.style_convs(i))}
        head["linear"] = {
            "kernel": _f32(rearrange(t(f"styles.{i}.linear.weight"), "o i -> i o")),
            "bias": _f32(t(f"styles.{i}.linear.bias")),
        }
        params[f"style_{i}"] = head
    return params


# ------------------------------------------------------------------------------------------------
# Options and the average latent
# ------------------------------------------------------------------------------------------------


def _styles_from_opts(opts: Mapping, what: str) -> tuple[int, str] | None:
    """(n_styles, where it came from) as the options give it, or None when they do not say."""
    if isinstance(opts.get("n_styles"), int):
        return int(opts["n_styles"]), f"opts n_styles = {opts['n_styles']}"
    for name in ("stylegan_size", "output_size"):
        size = opts.get(name)
        if isinstance(size, int) and not isinstance(size, bool):
            if size < 4 or size & (size - 1):
                raise CheckpointError(f"{what}: opts {name} = {size}: expected a power of two >= 4")
            n = 2 * int(math.log2(size)) - 2
            return n, f"opts {name} = {size}, i.e. {n} styles"
    return None


def _latent_avg(obj: Mapping, opts: Mapping, config: EncoderConfig, what: str, notes: list[str]) -> np.ndarray:
    """[n_styles, w_dim]: the file's latent_avg (a [w_dim] one broadcast to every row), or zeros
    when the encoder was trained without it (opts start_from_latent_avg False)."""
    latent_avg = obj.get("latent_avg")
    start = opts.get("start_from_latent_avg")
    shape = (config.n_styles, config.w_dim)
    if start is False or (start is None and latent_avg is None):
        notes.append("start_from_latent_avg is off: the codes are used as latents without an average latent")
        return np.zeros(shape, np.float32)
    if latent_avg is None:
        raise CheckpointError(f"{what}: latent_avg is missing (expected shape [{shape[0]}, {shape[1]}])")
    if not isinstance(latent_avg, np.ndarray) or latent_avg.shape not in (shape, (1, shape[1]), (shape[1],)):
        got = list(latent_avg.shape) if isinstance(latent_avg, np.ndarray) else type(latent_avg).__name__
        raise CheckpointError(f"{what}: latent_avg: expected shape [{shape[0]}, {shape[1]}], got {got}")
    if not np.issubdtype(latent_avg.dtype, np.floating) and latent_avg.dtype.name != "bfloat16":
        raise CheckpointError(f"{what}: latent_avg: expected a floating-point tensor, got {latent_avg.dtype}")
    latent_avg = _f32(latent_avg)
    if not np.all(np.isfinite(latent_avg)):
        raise CheckpointError(f"{what}: latent_avg: contains non-finite values")
    if start is None:
        notes.append("opts do not say start_from_latent_avg; the stored latent_avg is added to the codes")
    return _f32(np.broadcast_to(latent_avg.reshape(-1, shape[1]), shape))


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def params_from_checkpoint(obj: Any, what: str = "checkpoint") -> ConvertedEncoder:
    """Convert an object returned by `torch_reader.read_checkpoint` (no file writing)."""
    kind = detect_format(obj, what)
    opts = obj["opts"]
    state = obj["state_dict"]
    encoder = {str(k): v for k, v in state.items() if str(k).startswith(PREFIX)}
    config = infer_encoder_config(encoder, kind, what)
    from_opts = _styles_from_opts(opts, what)
    if from_opts is not None and from_opts[0] != config.n_styles:
        raise CheckpointError(
            f"{what}: {from_opts[1]}, but the state dict has {config.n_styles} style heads "
            f"({PREFIX}styles.0 .. {PREFIX}styles.{config.n_styles - 1})"
        )
    counters = set(batch_norms(config))
    floats = {k: v for k, v in encoder.items() if k.removesuffix(".num_batches_tracked") not in counters}
    check_layout(floats, encoder_layout(config), what)
    notes: list[str] = []
    params = {
        "encoder": params_from_state_dict(encoder, config),
        "latent_avg": _latent_avg(obj, opts, config, what, notes),
    }
    decoder_tensors = sum(1 for k in state if str(k).startswith("decoder."))
    return ConvertedEncoder(format=kind, config=config, params=params, notes=notes, decoder_tensors=decoder_tensors)


def decoder_note(converted: ConvertedEncoder, src: str | Path) -> str | None:
    """What to say about the decoder the file also holds (None when it holds none)."""
    if not converted.decoder_tensors:
        return None
    return (
        f"{Path(src).name} also holds its StyleGAN2 decoder ({converted.decoder_tensors} decoder.* tensors), "
        f"not part of the encoder directory; convert it with `jaxedit convert stylegan2 {src}`"
    )


def default_output_dir(src: str | Path) -> Path:
    """`ported_weights/<stem of SRC>_encoder` (the generator converter writes `<stem>` itself)."""
    return DEFAULT_OUTPUT_ROOT / f"{Path(src).stem}_encoder"


def convert_encoder(src: str | Path, dest: str | Path | None = None, overwrite: bool = False) -> ConvertedEncoder:
    """Read a pSp / e4e checkpoint safely, convert the encoder, and write an encoder directory.

    dest defaults to `ported_weights/<stem>_encoder`. Nothing is written when any step fails.
    The returned `ConvertedEncoder` has `path`, `notes` (recorded in the directory's manifest) and
    `decoder_note` (what to do with the decoder the file also holds) set.
    """
    from jaxedit.convert import torch_reader
    from jaxedit.io import sha256_file
    from jaxedit.modeldir import write_model_dir

    src = Path(src)
    dest = Path(dest) if dest is not None else default_output_dir(src)
    if not src.exists():
        raise CheckpointError(f"{src}: no such file")
    if not src.is_file():
        raise CheckpointError(f"{src}: not a file (expected a pSp / e4e .pt checkpoint)")
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} already exists; pass overwrite=True to replace it")
    obj = torch_reader.read_checkpoint(src)
    converted = params_from_checkpoint(obj, what=src.name)
    del obj
    converted.decoder_note = decoder_note(converted, src)
    source = {"path": str(src.absolute()), "sha256": sha256_file(src), "format": converted.format}
    if converted.notes:
        source["notes"] = converted.notes
    write_model_dir(
        dest,
        kind="encoder",
        config=converted.config.to_dict(),
        params=converted.params,
        source=source,
        overwrite=overwrite,
    )
    converted.path = dest
    return converted
