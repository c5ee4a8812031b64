"""Convert official StyleGAN2 checkpoints (rosinality, pSp, NVlabs) to jaxedit generator directories.

The file is read by `jaxedit.convert.torch_reader` (no torch, nothing from the file executed);
this module then

1. detects the layout (`detect_format`): rosinality `{'g_ema', 'latent_avg'}`, pSp
   `{'state_dict': {'decoder.*'}, 'latent_avg'}`, an NVlabs network pickle with `G_ema`, or a bare
   state dict of either layout;
2. derives the architecture (`GeneratorConfig`): from NVlabs' `_init_kwargs` when present, otherwise
   from the tensor shapes (each channel count by majority over the tensors that carry it, so one
   odd tensor is the one reported);
3. checks every key and shape against the layout that architecture implies, naming the first
   problem in one line ("synthesis.b8.conv0.weight: expected shape [512, 512, 3, 3], got
   [256, 512, 3, 3]"), plus missing/unexpected keys, non-float or non-finite tensors and non-standard
   FIR filters;
4. maps the tensors to our params (`jaxedit.stylegan2.networks` layout, NHWC/HWIO), keeping the stored
   noise maps and the average latent, and writes the directory atomically with
   `jaxedit.modeldir.write_model_dir(..., kind="generator")`.

`convert_stylegan2(src, dest=None)` does all of it; `params_from_checkpoint(obj)` stops before writing.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange

from jaxedit.errors import CheckpointError, ConfigError, describe_value
from jaxedit.stylegan2.config import MAX_RESOLUTION, GeneratorConfig, nvlabs_channels

FORMATS = ("rosinality", "psp", "nvlabs")
DEFAULT_OUTPUT_ROOT = Path("ported_weights")
# rosinality's Generator(lr_mlp=0.01) default; its files do not store it.
ROSINALITY_LR_MULTIPLIER = 0.01
W_AVG_ESTIMATE_SAMPLES = 10_000
_MAX_LOG2 = int(math.log2(MAX_RESOLUTION))
_INDEX = r"(\d{1,9})"  # layer indices in key names (longer digit runs are not layer keys)
_FIR_1D = np.array([1.0, 3.0, 3.0, 1.0])
_FIR_2D = np.outer(_FIR_1D, _FIR_1D) / np.outer(_FIR_1D, _FIR_1D).sum()


@dataclasses.dataclass
class ConvertedGenerator:
    """The result of a conversion (before or after writing)."""

    format: str
    config: GeneratorConfig
    params: dict  # {"mapping": ..., "synthesis": ...} numpy float32
    w_avg: np.ndarray  # [w_dim]
    notes: list[str]
    path: Path | None = None

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.params)


def count_parameters(params: Mapping) -> int:
    """Trainable parameters: everything except the stored noise maps (buffers)."""
    total = 0
    for key, value in params.items():
        if isinstance(value, Mapping):
            total += count_parameters(value)
        elif key != "noise_const":
            total += int(np.size(value))
    return total


# ------------------------------------------------------------------------------------------------
# Format detection
# ------------------------------------------------------------------------------------------------


def _is_persistent(obj: Any) -> bool:
    return hasattr(obj, "class_name") and hasattr(obj, "state")


def _describe_keys(obj: Mapping, limit: int = 6) -> str:
    keys = [str(k) for k in obj.keys()]
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}]"


def detect_format(obj: Any) -> str:
    """'rosinality', 'psp' or 'nvlabs' for a checkpoint object returned by the torch reader."""
    if _is_persistent(obj):
        return "nvlabs"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a StyleGAN2 checkpoint: the file holds a {type(obj).__name__}, expected a dict")
    if "G_ema" in obj:
        return "nvlabs"
    if "g_ema" in obj:
        return "rosinality"
    state = obj.get("state_dict")
    if isinstance(state, Mapping) and any(str(k).startswith("decoder.") for k in state):
        return "psp"
    if isinstance(state, Mapping):
        raise CheckpointError(
            f"not a StyleGAN2 checkpoint: 'state_dict' has no 'decoder.*' keys (a pSp checkpoint has them); "
            f"its keys start {_describe_keys(state)}"
        )
    if "style.1.weight" in obj or "input.input" in obj:
        return "rosinality"
    if "synthesis.b4.const" in obj or "mapping.fc0.weight" in obj:
        return "nvlabs"
    raise CheckpointError(
        "not a StyleGAN2 checkpoint: expected 'g_ema' (rosinality), 'state_dict' with 'decoder.*' keys (pSp) "
        f"or 'G_ema' (NVlabs pickle); found keys {_describe_keys(obj)}"
    )


# ------------------------------------------------------------------------------------------------
# Layout checking
# ------------------------------------------------------------------------------------------------


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def check_layout(tensors: Mapping[str, Any], expected: Mapping[str, tuple], what: str) -> None:
    """Raise CheckpointError naming the first mismatch between `tensors` and `expected` shapes.

    Order of reporting: wrong shapes, missing keys, unexpected keys, non-float/non-finite values.
    """
    problems: list[str] = []
    for key, shape in expected.items():
        if key in tensors:
            value = tensors[key]
            if not isinstance(value, np.ndarray):
                problems.append(f"{key}: expected a tensor of shape {_shape_str(shape)}, got {type(value).__name__}")
            elif tuple(value.shape) != tuple(shape):
                problems.append(f"{key}: expected shape {_shape_str(shape)}, got {_shape_str(value.shape)}")
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        problems.append(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing[:3])}{more}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        problems.append(
            f"unexpected key{'s' if len(unexpected) > 1 else ''} {', '.join(map(str, unexpected[:3]))}{more}"
        )
    if not problems:
        for key in expected:
            value = tensors[key]
            if not _is_float(value.dtype):
                problems.append(f"{key}: expected a floating-point tensor, got {value.dtype}")
            elif not np.all(np.isfinite(value.astype(np.float32))):
                problems.append(f"{key}: contains non-finite values")
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise CheckpointError(f"{what}: {problems[0]}{more}")


def check_finite_tree(tree: Mapping, what: str, prefix: str = "") -> None:
    """CheckpointError naming the first converted array (path in the params tree) holding a NaN or
    an infinity, e.g. a float64 value beyond the float32 range, or a weight scaled past it."""
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            check_finite_tree(value, what, path)
        elif not np.all(np.isfinite(value)):
            raise CheckpointError(f"{what}: converted {path} holds non-finite values (out of the float32 range?)")


def _is_float(dtype: np.dtype) -> bool:
    """float16/32/64 and bfloat16 (which the reader returns as ml_dtypes.bfloat16, kind 'V')."""
    return np.issubdtype(dtype, np.floating) or np.dtype(dtype).name == "bfloat16"


def _check_fir(tensors: Mapping[str, np.ndarray], keys: list[str], gain: float, what: str) -> None:
    for key in keys:
        if not np.allclose(tensors[key], _FIR_2D * gain, rtol=1e-5, atol=1e-7):
            raise CheckpointError(
                f"{what}: {key}: expected the standard FIR outer([1,3,3,1]) with sum {gain:g}, got a different filter "
                "(unsupported architecture)"
            )


def _majority(values: list[int]) -> int:
    counts = collections.Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def _dim(tensors: Mapping, key: str, axis: int, ndim: int) -> list[int]:
    value = tensors.get(key)
    if isinstance(value, np.ndarray) and value.ndim == ndim:
        return [int(value.shape[axis])]
    return []


def _f32(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float32, order="C")  # (ascontiguousarray would turn 0-d into 1-d)


# ------------------------------------------------------------------------------------------------
# rosinality / pSp
# ------------------------------------------------------------------------------------------------


def rosinality_layout(config: GeneratorConfig) -> dict[str, tuple]:
    """Every key and shape of rosinality's `g_ema.state_dict()` for this architecture."""
    w, ch = config.w_dim, config.channel
    layout: dict[str, tuple] = {}
    for i in range(1, config.mapping_layers + 1):
        fan_in = config.z_dim if i == 1 else w
        layout[f"style.{i}.weight"] = (w, fan_in)
        layout[f"style.{i}.bias"] = (w,)
    layout["input.input"] = (1, ch(4), 4, 4)

    def conv(prefix, cin, cout, up):
        layout[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            layout[f"{prefix}.conv.blur.kernel"] = (4, 4)
        layout[f"{prefix}.conv.modulation.weight"] = (cin, w)
        layout[f"{prefix}.conv.modulation.bias"] = (cin,)
        layout[f"{prefix}.noise.weight"] = (1,)
        layout[f"{prefix}.activate.bias"] = (cout,)

    def rgb(prefix, cin, up):
        layout[f"{prefix}.bias"] = (1, config.img_channels, 1, 1)
        if up:
            layout[f"{prefix}.upsample.kernel"] = (4, 4)
        layout[f"{prefix}.conv.weight"] = (1, config.img_channels, cin, 1, 1)
        layout[f"{prefix}.conv.modulation.weight"] = (cin, w)
        layout[f"{prefix}.conv.modulation.bias"] = (cin,)

    conv("conv1", ch(4), ch(4), False)
    rgb("to_rgb1", ch(4), False)
    for k, res in enumerate(config.resolutions[1:]):
        conv(f"convs.{2 * k}", ch(res // 2), ch(res), True)
        conv(f"convs.{2 * k + 1}", ch(res), ch(res), False)
    for k, res in enumerate(config.resolutions[1:]):
        rgb(f"to_rgbs.{k}", ch(res), True)
    for j, res in enumerate(config.noise_resolutions()):
        layout[f"noises.noise_{j}"] = (1, 1, res, res)
    return layout


def infer_rosinality_config(sd: Mapping[str, Any], what: str) -> GeneratorConfig:
    """The architecture implied by a rosinality state dict's shapes (majority vote per quantity)."""
    keys = [str(k) for k in sd]
    style_ids = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(rf"style\.{_INDEX}\.weight", k)))
    rgb_ids = {int(m.group(1)) for k in keys if (m := re.match(rf"to_rgbs\.{_INDEX}\.", k))}
    conv_ids = {int(m.group(1)) for k in keys if (m := re.match(rf"convs\.{_INDEX}\.", k))}
    noise_ids = {int(m.group(1)) for k in keys if (m := re.fullmatch(rf"noises\.noise_{_INDEX}", k))}
    if not style_ids or "input.input" not in sd:
        raise CheckpointError(
            f"{what}: not a rosinality StyleGAN2 generator (no 'style.1.weight' / 'input.input' keys); "
            f"keys start {_describe_keys(sd)}"
        )
    log2_candidates = []
    if rgb_ids:
        log2_candidates.append(max(rgb_ids) + 3)
    if conv_ids:
        log2_candidates.append(max(conv_ids) // 2 + 3)
    if noise_ids:
        log2_candidates.append((max(noise_ids) + 1) // 2 + 2)
    log2 = _majority(log2_candidates) if log2_candidates else 2
    if not 2 <= log2 <= _MAX_LOG2:
        evidence = f"to_rgbs.{max(rgb_ids)}" if rgb_ids else f"convs.{max(conv_ids)}" if conv_ids else "noises"
        raise CheckpointError(
            f"{what}: the layer keys (e.g. {evidence}) imply resolution 2**{log2}; expected 4..{MAX_RESOLUTION}"
        )
    resolution = 2**log2
    mapping_layers = len(style_ids)

    w_votes = (
        _dim(sd, "style.1.weight", 0, 2)
        + _dim(sd, "conv1.conv.modulation.weight", 1, 2)
        + _dim(sd, "to_rgb1.conv.modulation.weight", 1, 2)
    )
    z_votes = _dim(sd, "style.1.weight", 1, 2)
    if not w_votes or not z_votes:
        raise CheckpointError(
            f"{what}: style.1.weight: expected a 2-D tensor [w_dim, z_dim], got {_shape_of(sd.get('style.1.weight'))}"
        )
    channels = {}
    for r in [2**k for k in range(2, log2 + 1)]:
        if r == 4:
            votes = (
                _dim(sd, "input.input", 1, 4)
                + _dim(sd, "conv1.conv.weight", 1, 5)
                + _dim(sd, "conv1.conv.weight", 2, 5)
                + _dim(sd, "conv1.activate.bias", 0, 1)
                + _dim(sd, "to_rgb1.conv.weight", 2, 5)
            )
        else:
            k = int(math.log2(r)) - 3
            a, b = f"convs.{2 * k}", f"convs.{2 * k + 1}"
            votes = (
                _dim(sd, f"{a}.conv.weight", 1, 5)
                + _dim(sd, f"{b}.conv.weight", 1, 5)
                + _dim(sd, f"{b}.conv.weight", 2, 5)
                + _dim(sd, f"{a}.activate.bias", 0, 1)
                + _dim(sd, f"{b}.activate.bias", 0, 1)
                + _dim(sd, f"to_rgbs.{k}.conv.weight", 2, 5)
            )
        if not votes:
            raise CheckpointError(
                f"{what}: cannot tell the channel count at resolution {r}: missing the conv weights of that block"
            )
        channels[r] = _majority(votes)
    img_votes = _dim(sd, "to_rgb1.conv.weight", 1, 5)
    return _config(
        what,
        resolution=resolution,
        z_dim=z_votes[0],
        w_dim=_majority(w_votes),
        mapping_layers=mapping_layers,
        channels=channels,
        lr_multiplier=ROSINALITY_LR_MULTIPLIER,
        conv_clamp=None,
        img_channels=img_votes[0] if img_votes else 3,
    )


def _config(what: str, **fields: Any) -> GeneratorConfig:
    """GeneratorConfig(**fields), its validation failures reported as this file's CheckpointError."""
    try:
        return GeneratorConfig(**fields)
    except ConfigError as error:
        raise CheckpointError(f"{what}: unsupported architecture: {error}") from None


def _shape_of(value) -> str:
    return (
        _shape_str(value.shape)
        if isinstance(value, np.ndarray)
        else ("missing" if value is None else type(value).__name__)
    )


def params_from_rosinality(sd: Mapping[str, np.ndarray], config: GeneratorConfig) -> dict:
    """rosinality `g_ema` state dict (layout already checked) -> our params pytree (float32 numpy)."""

    def affine(prefix):
        return {"kernel": _f32(sd[f"{prefix}.modulation.weight"].T), "bias": _f32(sd[f"{prefix}.modulation.bias"])}

    def conv(prefix, noise_index):
        weight = sd[f"{prefix}.conv.weight"][0]  # [O, I, 3, 3]
        scale = 1.0 / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        return {
            "affine": affine(f"{prefix}.conv"),
            "kernel": _f32(rearrange(weight.astype(np.float64) * scale, "o i h w -> h w i o")),
            "bias": _f32(sd[f"{prefix}.activate.bias"]),
            "noise_strength": _f32(sd[f"{prefix}.noise.weight"].reshape(())),
            "noise_const": _f32(sd[f"noises.noise_{noise_index}"][0, 0]),
        }

    def rgb(prefix):
        return {
            "affine": affine(f"{prefix}.conv"),
            "kernel": _f32(rearrange(sd[f"{prefix}.conv.weight"], "1 o i 1 1 -> i o")),
            "bias": _f32(sd[f"{prefix}.bias"].reshape(-1)),
        }

    mapping = {
        f"fc{i}": {"kernel": _f32(sd[f"style.{i + 1}.weight"].T), "bias": _f32(sd[f"style.{i + 1}.bias"])}
        for i in range(config.mapping_layers)
    }
    synthesis = {
        "b4": {
            "const": _f32(rearrange(sd["input.input"], "1 c h w -> h w c")),
            "conv1": conv("conv1", 0),
            "torgb": rgb("to_rgb1"),
        }
    }
    for k, res in enumerate(config.resolutions[1:]):
        synthesis[f"b{res}"] = {
            "conv0": conv(f"convs.{2 * k}", 2 * k + 1),
            "conv1": conv(f"convs.{2 * k + 1}", 2 * k + 2),
            "torgb": rgb(f"to_rgbs.{k}"),
        }
    return {"mapping": mapping, "synthesis": synthesis}


def _rosinality_fir_keys(config: GeneratorConfig) -> list[str]:
    n = len(config.resolutions) - 1
    return [f"convs.{2 * k}.conv.blur.kernel" for k in range(n)] + [f"to_rgbs.{k}.upsample.kernel" for k in range(n)]


def _convert_rosinality(
    sd: Mapping, latent_avg: Any, what: str, notes: list[str]
) -> tuple[GeneratorConfig, dict, np.ndarray | None]:
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{what}: expected a state dict, got {type(sd).__name__}")
    sd = {str(k): v for k, v in sd.items()}
    config = infer_rosinality_config(sd, what)
    check_layout(sd, rosinality_layout(config), what)
    _check_fir(sd, _rosinality_fir_keys(config), 4.0, what)
    params = params_from_rosinality(sd, config)
    w_avg = None
    if latent_avg is not None:
        if (
            not isinstance(latent_avg, np.ndarray)
            or latent_avg.ndim not in (1, 2)
            or latent_avg.shape[-1] != config.w_dim
        ):
            raise CheckpointError(
                f"{what}: latent_avg: expected shape [{config.w_dim}] or [num_ws, {config.w_dim}], got {_shape_of(latent_avg)}"
            )
        if not np.all(np.isfinite(latent_avg)):
            raise CheckpointError(f"{what}: latent_avg: contains non-finite values")
        if latent_avg.ndim == 2:
            if latent_avg.shape[0] != config.num_ws:
                raise CheckpointError(
                    f"{what}: latent_avg: expected shape [{config.num_ws}, {config.w_dim}], got {_shape_of(latent_avg)}"
                )
            if not np.allclose(latent_avg, latent_avg[:1]):
                notes.append("latent_avg rows differ; the average latent is their mean")
            w_avg = (
                latent_avg.astype(np.float64).mean(axis=0)
                if not np.allclose(latent_avg, latent_avg[:1])
                else latent_avg[0]
            )
        else:
            w_avg = latent_avg
        w_avg = _f32(w_avg)
    return config, params, w_avg


# ------------------------------------------------------------------------------------------------
# NVlabs
# ------------------------------------------------------------------------------------------------


def nvlabs_layout(config: GeneratorConfig) -> dict[str, tuple]:
    """Every key and shape of NVlabs' `G_ema.state_dict()` (stylegan2-ada-pytorch / stylegan3's
    StyleGAN2 generator, 'skip' architecture, unconditional)."""
    w, ch = config.w_dim, config.channel
    layout: dict[str, tuple] = {}

    def conv(prefix, cin, cout, res):
        layout.update(
            {
                f"{prefix}.weight": (cout, cin, 3, 3),
                f"{prefix}.noise_strength": (),
                f"{prefix}.bias": (cout,),
                f"{prefix}.resample_filter": (4, 4),
                f"{prefix}.noise_const": (res, res),
                f"{prefix}.affine.weight": (cin, w),
                f"{prefix}.affine.bias": (cin,),
            }
        )

    def rgb(prefix, cin):
        layout.update(
            {
                f"{prefix}.weight": (config.img_channels, cin, 1, 1),
                f"{prefix}.bias": (config.img_channels,),
                f"{prefix}.affine.weight": (cin, w),
                f"{prefix}.affine.bias": (cin,),
            }
        )

    layout["synthesis.b4.const"] = (ch(4), 4, 4)
    layout["synthesis.b4.resample_filter"] = (4, 4)
    conv("synthesis.b4.conv1", ch(4), ch(4), 4)
    rgb("synthesis.b4.torgb", ch(4))
    for res in config.resolutions[1:]:
        layout[f"synthesis.b{res}.resample_filter"] = (4, 4)
        conv(f"synthesis.b{res}.conv0", ch(res // 2), ch(res), res)
        conv(f"synthesis.b{res}.conv1", ch(res), ch(res), res)
        rgb(f"synthesis.b{res}.torgb", ch(res))
    layout["mapping.w_avg"] = (w,)
    for i in range(config.mapping_layers):
        fan_in = config.z_dim if i == 0 else w
        layout[f"mapping.fc{i}.weight"] = (w, fan_in)
        layout[f"mapping.fc{i}.bias"] = (w,)
    return layout


def nvlabs_config_from_kwargs(kwargs: Mapping, what: str) -> GeneratorConfig:
    """GeneratorConfig from NVlabs `G_ema._init_kwargs`, refusing what we do not implement."""

    def get(mapping, key, default):
        value = mapping.get(key, default) if isinstance(mapping, Mapping) else default
        return default if value is None and default is not None else value

    synthesis_kwargs = kwargs.get("synthesis_kwargs") or {}
    mapping_kwargs = kwargs.get("mapping_kwargs") or {}
    for name, value in (("synthesis_kwargs", synthesis_kwargs), ("mapping_kwargs", mapping_kwargs)):
        if not isinstance(value, Mapping):
            raise CheckpointError(f"{what}: G_ema init kwargs: {name} is a {type(value).__name__}, expected a dict")
    c_dim = get(kwargs, "c_dim", 0)
    if c_dim not in (0, None):
        raise CheckpointError(
            f"{what}: conditional NVlabs generators (c_dim={describe_value(c_dim)}) are not supported; expected c_dim=0"
        )
    architecture = get(synthesis_kwargs, "architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(
            f"{what}: synthesis architecture {describe_value(architecture)} is not supported; expected 'skip' (StyleGAN2 config-e/f)"
        )

    def number(mapping: Mapping, key: str, default: Any, where: str, low: int, high: int) -> int:
        value = get(mapping, key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CheckpointError(
                f"{what}: G_ema init kwargs: {where}{key} is {describe_value(value)}, expected an integer {low}..{high}"
            )
        return value

    resolution = number(kwargs, "img_resolution", None, "", 4, MAX_RESOLUTION)
    if resolution & (resolution - 1):
        raise CheckpointError(f"{what}: G_ema init kwargs: img_resolution {resolution} is not a power of two")
    w_dim = number(kwargs, "w_dim", 512, "", 1, 1 << 13)
    for key in ("layer_features", "embed_features"):
        value = mapping_kwargs.get(key)
        if value is not None and value != w_dim:
            raise CheckpointError(
                f"{what}: mapping_kwargs.{key}={describe_value(value)} is not supported; expected w_dim ({w_dim})"
            )
    channel_base = number(synthesis_kwargs, "channel_base", 32768, "synthesis_kwargs.", 1, 1 << 30)
    channel_max = number(synthesis_kwargs, "channel_max", 512, "synthesis_kwargs.", 1, 1 << 13)
    lr_multiplier = get(mapping_kwargs, "lr_multiplier", 0.01)
    if isinstance(lr_multiplier, bool) or not isinstance(lr_multiplier, (int, float)):
        raise CheckpointError(
            f"{what}: G_ema init kwargs: mapping_kwargs.lr_multiplier is {describe_value(lr_multiplier)}, expected a number"
        )
    conv_clamp = synthesis_kwargs.get("conv_clamp")
    if conv_clamp is not None and (isinstance(conv_clamp, bool) or not isinstance(conv_clamp, (int, float))):
        raise CheckpointError(
            f"{what}: G_ema init kwargs: synthesis_kwargs.conv_clamp is {describe_value(conv_clamp)}, expected a number or None"
        )
    return _config(
        what,
        resolution=resolution,
        z_dim=number(kwargs, "z_dim", 512, "", 1, 1 << 13),
        w_dim=w_dim,
        mapping_layers=number(mapping_kwargs, "num_layers", 8, "mapping_kwargs.", 1, 1 << 10),
        channels=nvlabs_channels(resolution, channel_base, channel_max),
        lr_multiplier=lr_multiplier,
        conv_clamp=conv_clamp,
        img_channels=number(kwargs, "img_channels", 3, "", 1, 1 << 10),
    )


def infer_nvlabs_config(sd: Mapping[str, Any], what: str) -> GeneratorConfig:
    """The architecture implied by a bare NVlabs state dict's shapes (conv_clamp unknown: None)."""
    keys = [str(k) for k in sd]
    block_res = {int(m.group(1)) for k in keys if (m := re.match(rf"synthesis\.b{_INDEX}\.", k))}
    fc_ids = {int(m.group(1)) for k in keys if (m := re.match(rf"mapping\.fc{_INDEX}\.", k))}
    if not block_res or not fc_ids:
        raise CheckpointError(f"{what}: not an NVlabs StyleGAN2 generator (no 'synthesis.b*' / 'mapping.fc*' keys)")
    resolution = max(block_res)
    if resolution & (resolution - 1) or not 4 <= resolution <= MAX_RESOLUTION:
        raise CheckpointError(
            f"{what}: synthesis.b{resolution}: expected a power-of-two resolution 4..{MAX_RESOLUTION}"
        )
    channels = {}
    for r in _pow2_upto(resolution):
        p = f"synthesis.b{r}"
        votes = (
            _dim(sd, f"{p}.conv1.weight", 0, 4)
            + _dim(sd, f"{p}.conv1.weight", 1, 4)
            + _dim(sd, f"{p}.conv0.weight", 0, 4)
            + _dim(sd, f"{p}.conv1.bias", 0, 1)
            + _dim(sd, f"{p}.torgb.weight", 1, 4)
            + _dim(sd, f"{p}.const", 0, 3)
        )
        if not votes:
            raise CheckpointError(f"{what}: cannot tell the channel count at resolution {r}: missing {p}.conv1.weight")
        channels[r] = _majority(votes)
    w_votes = (
        _dim(sd, "mapping.fc0.weight", 0, 2)
        + _dim(sd, "mapping.w_avg", 0, 1)
        + _dim(sd, "synthesis.b4.conv1.affine.weight", 1, 2)
    )
    z_votes = _dim(sd, "mapping.fc0.weight", 1, 2)
    if not w_votes or not z_votes:
        raise CheckpointError(
            f"{what}: mapping.fc0.weight: expected a 2-D tensor [w_dim, z_dim], got {_shape_of(sd.get('mapping.fc0.weight'))}"
        )
    img_votes = _dim(sd, "synthesis.b4.torgb.weight", 0, 4)
    return _config(
        what,
        resolution=resolution,
        z_dim=z_votes[0],
        w_dim=_majority(w_votes),
        mapping_layers=max(fc_ids) + 1,
        channels=channels,
        img_channels=img_votes[0] if img_votes else 3,
    )


def _pow2_upto(resolution: int) -> list[int]:
    return [2**k for k in range(2, int(math.log2(resolution)) + 1)]


def params_from_nvlabs(sd: Mapping[str, np.ndarray], config: GeneratorConfig) -> dict:
    """NVlabs `G_ema.state_dict()` (layout already checked) -> our params pytree (float32 numpy)."""

    def affine(prefix):
        return {"kernel": _f32(sd[f"{prefix}.affine.weight"].T), "bias": _f32(sd[f"{prefix}.affine.bias"])}

    def conv(prefix):
        return {
            "affine": affine(prefix),
            "kernel": _f32(rearrange(sd[f"{prefix}.weight"], "o i h w -> h w i o")),
            "bias": _f32(sd[f"{prefix}.bias"]),
            "noise_strength": _f32(np.reshape(sd[f"{prefix}.noise_strength"], ())),
            "noise_const": _f32(sd[f"{prefix}.noise_const"]),
        }

    def rgb(prefix):
        return {
            "affine": affine(prefix),
            "kernel": _f32(rearrange(sd[f"{prefix}.weight"], "o i 1 1 -> i o")),
            "bias": _f32(sd[f"{prefix}.bias"]),
        }

    mapping = {
        f"fc{i}": {"kernel": _f32(sd[f"mapping.fc{i}.weight"].T), "bias": _f32(sd[f"mapping.fc{i}.bias"])}
        for i in range(config.mapping_layers)
    }
    synthesis = {
        "b4": {
            "const": _f32(rearrange(sd["synthesis.b4.const"], "c h w -> h w c")),
            "conv1": conv("synthesis.b4.conv1"),
            "torgb": rgb("synthesis.b4.torgb"),
        }
    }
    for res in config.resolutions[1:]:
        p = f"synthesis.b{res}"
        synthesis[f"b{res}"] = {"conv0": conv(f"{p}.conv0"), "conv1": conv(f"{p}.conv1"), "torgb": rgb(f"{p}.torgb")}
    return {"mapping": mapping, "synthesis": synthesis}


def _convert_nvlabs(obj: Any, what: str, notes: list[str], state_dict_of: Callable, init_kwargs_of: Callable):
    if isinstance(obj, Mapping) and "G_ema" in obj:
        obj = obj["G_ema"]
    if _is_persistent(obj):
        class_name = str(obj.class_name)
        if class_name.rsplit(".", 1)[-1] != "Generator":
            raise CheckpointError(
                f"{what}: G_ema is a {class_name!r} network; expected an NVlabs StyleGAN2 'Generator'"
            )
        sd = state_dict_of(obj)
        kwargs = init_kwargs_of(obj)
        config = nvlabs_config_from_kwargs(kwargs, what) if kwargs else infer_nvlabs_config(sd, what)
    elif isinstance(obj, Mapping) and not any(isinstance(v, Mapping) or _is_persistent(v) for v in obj.values()):
        sd = obj
        config = infer_nvlabs_config({str(k): v for k, v in sd.items()}, what)
        notes.append("bare NVlabs state dict: architecture inferred from shapes, conv_clamp assumed None")
    else:
        raise CheckpointError(f"{what}: G_ema is a {type(obj).__name__}, expected an NVlabs persistent network object")
    sd = {str(k): v for k, v in sd.items()}
    if any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", k) for k in sd):
        raise CheckpointError(
            f"{what}: this is a StyleGAN3 (alias-free) generator (synthesis.input / synthesis.L* layers); "
            "only StyleGAN2 generators are supported"
        )
    check_layout(sd, nvlabs_layout(config), what)
    filters = [k for k in sd if k.endswith("resample_filter")]
    _check_fir(sd, filters, 1.0, what)
    return config, params_from_nvlabs(sd, config), _f32(sd["mapping.w_avg"])


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def estimate_w_avg(
    config: GeneratorConfig, mapping_params: Mapping, samples: int = W_AVG_ESTIMATE_SAMPLES, seed: int = 0
) -> np.ndarray:
    """mean(mapping(z)) over `samples` z ~ N(0, I) (rosinality's `mean_latent`), for files without one."""
    import jax
    import jax.numpy as jnp

    from jaxedit.stylegan2.networks import MappingNetwork

    z = jax.random.normal(jax.random.key(seed), (samples, config.z_dim))
    w = MappingNetwork(config).apply({"params": jax.tree.map(jnp.asarray, mapping_params)}, z)
    return _f32(np.asarray(jnp.mean(w, axis=0)))


def params_from_checkpoint(
    obj: Any, what: str = "checkpoint", *, state_dict_of: Callable | None = None, init_kwargs_of: Callable | None = None
) -> ConvertedGenerator:
    """Convert an object returned by `torch_reader.read_checkpoint` (no file writing).

    Every architecture number is validated before anything is built from it, and every converted
    tensor (and the average latent) is checked finite; anything wrong is a one-line CheckpointError.
    """
    try:
        return _params_from_checkpoint(obj, what, state_dict_of, init_kwargs_of)
    except RecursionError:
        raise CheckpointError(f"{what}: structure nested too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{what}: the architecture it describes does not fit in memory") from None
    except OverflowError:
        raise CheckpointError(f"{what}: a number in the checkpoint is out of range") from None


def _params_from_checkpoint(
    obj: Any, what: str, state_dict_of: Callable | None, init_kwargs_of: Callable | None
) -> ConvertedGenerator:
    if state_dict_of is None or init_kwargs_of is None:
        from jaxedit.convert import torch_reader

        state_dict_of = state_dict_of or torch_reader.module_state_dict
        init_kwargs_of = init_kwargs_of or torch_reader.init_kwargs
    fmt = detect_format(obj)
    notes: list[str] = []
    if fmt == "nvlabs":
        config, params, w_avg = _convert_nvlabs(obj, what, notes, state_dict_of, init_kwargs_of)
    elif fmt == "psp":
        decoder = {str(k)[len("decoder.") :]: v for k, v in obj["state_dict"].items() if str(k).startswith("decoder.")}
        latent_avg = obj.get("latent_avg")
        config, params, w_avg = _convert_rosinality(decoder, latent_avg, what + " (pSp decoder)", notes)
    else:
        if "g_ema" in obj:
            sd, latent_avg = obj["g_ema"], obj.get("latent_avg")
        else:
            sd, latent_avg = obj, None
        config, params, w_avg = _convert_rosinality(sd, latent_avg, what, notes)
    if w_avg is None:
        w_avg = estimate_w_avg(config, params["mapping"])
        notes.append(
            f"no average latent stored; estimated as the mean of mapping(z) over {W_AVG_ESTIMATE_SAMPLES} z (seed 0)"
        )
    check_finite_tree({"params": params, "w_avg": w_avg}, what)
    return ConvertedGenerator(format=fmt, config=config, params=params, w_avg=w_avg, notes=notes)


def default_output_dir(src: str | Path) -> Path:
    """`ported_weights/<stem of SRC>` (relative to the working directory)."""
    return DEFAULT_OUTPUT_ROOT / Path(src).stem


def convert_stylegan2(src: str | Path, dest: str | Path | None = None, overwrite: bool = False) -> ConvertedGenerator:
    """Read `src` safely, convert, and write a generator directory atomically at `dest`.

    dest defaults to `ported_weights/<stem>`. Nothing is written when any step fails.
    """
    from jaxedit.convert import torch_reader
    from jaxedit.io import sha256_file
    from jaxedit.modeldir import write_model_dir

    src = Path(src)
    dest = Path(dest) if dest is not None else default_output_dir(src)
    if not src.exists():
        raise CheckpointError(f"{src}: no such file")
    if not src.is_file():
        raise CheckpointError(f"{src}: not a file (expected a .pt / .pkl checkpoint)")
    if dest.exists() and not overwrite:
        raise CheckpointError(f"{dest} already exists; pass overwrite=True to replace it")
    obj = torch_reader.read_checkpoint(src)
    converted = params_from_checkpoint(obj, what=src.name)
    source = {"path": str(src.absolute()), "sha256": sha256_file(src), "format": converted.format}
    if converted.notes:
        source["notes"] = converted.notes
    tree = dict(converted.params)
    tree["w_avg"] = converted.w_avg
    write_model_dir(
        dest, kind="generator", config=converted.config.to_dict(), params=tree, source=source, overwrite=overwrite
    )
    converted.path = dest
    return converted
