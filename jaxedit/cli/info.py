"""What a converted or trained model directory holds, read from its manifest and array metadata.

`describe(dir)` returns a JSON-ready dict; `format_info(described)` renders it as the text that
`jaxedit info DIR` prints. Nothing here loads the arrays themselves: parameter counts come from the
orbax metadata (shapes and dtypes), so describing a 1024 px generator is instant.

For a generator: resolution, W+ layer count, z/w dims, channels per resolution, mapping layers,
conv_clamp. For editors: the method preset, the attributes, the latent shape, the module sizes, and
what they were made for (their provenance: the generator or the synthetic world).
For an encoder (pSp / e4e): its kind, the W+ latents it gives, the input size, the backbone, the
parameter count. For all: the source file (path, sha256, format) and the creation date.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.errors import ConfigError
from jaxedit.modeldir import PARAMS_DIR, read_manifest
from jaxedit.orbax_logs import one_line, quiet_orbax

# Config keys are looked up by the first of these names present (generator configs name them so).
_GENERATOR_FIELDS = (
    ("resolution", ("resolution", "img_resolution", "size")),
    ("num_ws", ("num_ws", "n_latent")),
    ("z_dim", ("z_dim", "style_dim")),
    ("w_dim", ("w_dim", "style_dim")),
    ("mapping_layers", ("mapping_layers", "num_mapping_layers", "n_mlp")),
    ("channels", ("channels", "channel_table", "channels_dict")),
    ("conv_clamp", ("conv_clamp",)),
    ("image_channels", ("img_channels", "image_channels")),
    ("architecture", ("architecture", "layout", "flavour", "flavor")),
)


def array_metadata(params_dir: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{"a/b/kernel": (shape, dtype)}` of an orbax params directory, without reading the arrays."""
    import jax
    import orbax.checkpoint as ocp

    params_dir = Path(params_dir).absolute()
    if not params_dir.is_dir():
        raise ConfigError(f"{params_dir}: no saved arrays here (expected an orbax checkpoint directory)")
    try:
        with quiet_orbax(), ocp.PyTreeCheckpointer() as checkpointer:
            metadata = checkpointer.metadata(params_dir)
        tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", None)
        if tree is None:
            tree = metadata.item_metadata
        flat = jax.tree.flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))[0]
    except Exception as error:  # orbax raises many types on damaged directories
        raise ConfigError(f"{params_dir}: cannot read array metadata ({one_line(error)})") from error
    result = {}
    for path, leaf in flat:
        key = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        result[key] = (tuple(int(s) for s in leaf.shape), str(np.dtype(leaf.dtype)))
    return result


def _first(config: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        if name in config:
            return config[name]
    return None


def _flatten_config(config: Any) -> dict:
    """Top-level keys plus those of nested dicts (a nested key does not shadow a top-level one)."""
    flat: dict = {}
    if isinstance(config, dict):
        for key, value in config.items():
            if isinstance(value, dict) and key not in ("channels", "channel_table", "channels_dict"):
                for inner_key, inner in _flatten_config(value).items():
                    flat.setdefault(inner_key, inner)
        for key, value in config.items():
            flat[key] = value
    return flat


def _generator_summary(config: dict, arrays: dict) -> dict:
    flat = _flatten_config(config)
    summary = {field: _first(flat, names) for field, names in _GENERATOR_FIELDS if _first(flat, names) is not None}
    if "conv_clamp" in flat:
        summary["conv_clamp"] = flat["conv_clamp"] if flat["conv_clamp"] is not None else "none"
    channels = summary.get("channels")
    if isinstance(channels, dict):
        summary["channels"] = {str(r): channels[r] for r in sorted(channels, key=lambda r: int(r))}
    buffers = sum(math.prod(s) for k, (s, _) in arrays.items() if _is_generator_buffer(k))
    summary["parameters"] = sum(math.prod(s) for k, (s, _) in arrays.items() if not _is_generator_buffer(k))
    summary["buffers"] = f"{buffers:,} values (noise maps, w_avg)"
    return summary


def _is_generator_buffer(key: str) -> bool:
    """Stored arrays that are not trained weights: noise maps and the average latent."""
    leaf = key.rsplit("/", 1)[-1]
    return leaf in ("noise_const", "w_avg") or key == "w_avg"


def _editors_summary(config: dict, arrays: dict) -> dict:
    flat = _flatten_config(config)
    preset = config.get("preset")
    preset_name = preset.get("name") if isinstance(preset, dict) else preset
    summary: dict = {"preset": preset_name or flat.get("name")}
    attributes = flat.get("attributes")
    if attributes is not None:
        summary["attributes"] = list(attributes)
    shape = flat.get("latent_shape")
    if shape is None and flat.get("space") is not None and flat.get("w_dim") is not None:
        shape = [flat["w_dim"]] if flat["space"] == "w" else [flat.get("num_ws"), flat["w_dim"]]
    if shape is not None:
        summary["latent_shape"] = list(shape)
    if "transformer_kind" in flat:
        summary["transformer_kind"] = flat["transformer_kind"]
    if flat.get("edit_layers") is not None and shape is not None and len(shape) == 2:
        first, stop = (int(i) for i in flat["edit_layers"])
        stop = min(stop, int(shape[0]))
        summary["edit_layers"] = f"{first}-{stop - 1} of 0-{int(shape[0]) - 1} (W+ layers that take the edit)"
    else:
        summary["edit_layers"] = "all"
    for key in ("edit_alpha_range", "table_alpha"):
        if key in flat:
            summary[key] = flat[key]
    if "edit_alpha_range" in flat:
        summary["training_alpha"] = (
            "|alpha| <= 1 (edit_alpha_range is what edits are meant for; beyond |alpha| 3 warns)"
        )
    training = config.get("training")
    if isinstance(training, dict) and training.get("origin"):
        summary["origin"] = training["origin"]
    from jaxedit.latent.provenance import describe_provenance, read_provenance

    summary["made_for"] = describe_provenance(read_provenance(config, "editors"))
    classifier = sum(math.prod(s) for k, (s, _) in arrays.items() if k.startswith("classifier"))
    transformers = sum(math.prod(s) for k, (s, _) in arrays.items() if k.startswith("transformer"))
    if classifier or transformers:
        summary["classifier_parameters"] = classifier
        summary["transformer_parameters"] = transformers
    return summary


def _encoder_summary(config: dict, arrays: dict) -> dict:
    def is_buffer(key: str) -> bool:  # BatchNorm running statistics and the average latent
        return key == "latent_avg" or key.rsplit("/", 1)[-1] in ("mean", "var")

    summary: dict = {"encoder_kind": config.get("kind")}
    if config.get("n_styles") is not None and config.get("w_dim") is not None:
        summary["latents"] = f"W+ [{config['n_styles']}, {config['w_dim']}]"
    size = config.get("input_size")
    if size is not None:
        summary["input_size"] = f"{size}x{size}"
    depths, units = config.get("stage_depths"), config.get("stage_units")
    if isinstance(depths, list) and isinstance(units, list):
        summary["backbone"] = ", ".join(f"{u} x {d}" for u, d in zip(units, depths)) + " (units x width per stage)"
    summary["parameters"] = sum(math.prod(s) for k, (s, _) in arrays.items() if not is_buffer(k))
    buffers = sum(math.prod(s) for k, (s, _) in arrays.items() if is_buffer(k))
    summary["buffers"] = f"{buffers:,} values (BatchNorm statistics, latent_avg)"
    return summary


def check_config(directory: Path, kind: Any, config: Any, arrays: dict) -> None:
    """Refuse (one-line ConfigError) a manifest config that the loader of its kind would refuse:
    architecture numbers out of range, an unknown or inconsistent preset, unknown attribute names,
    stored array shapes that disagree with the config. Nothing is loaded."""
    if kind == "generator":
        from jaxedit.stylegan2.config import GeneratorConfig

        try:
            GeneratorConfig.from_dict(config)
        except ConfigError as error:
            raise ConfigError(f"{directory}: generator config: {error}") from None
    elif kind == "editors":
        from jaxedit.latent.editors import check_stored_shapes, editors_config

        where = f"editors {directory}"
        _, classifier, transformer, names = editors_config(config, where)
        check_stored_shapes(where, {k: shape for k, (shape, _) in arrays.items()}, classifier, transformer, names)
    elif kind == "encoder":
        from jaxedit.encoders.config import EncoderConfig

        try:
            EncoderConfig.from_dict(config)
        except ConfigError as error:
            raise ConfigError(f"{directory}: encoder config: {error}") from None


def describe(directory: str | Path) -> dict:
    """JSON-ready description of a jaxedit model directory (generator, editors or encoder)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    arrays = array_metadata(directory / PARAMS_DIR)
    config = manifest.get("config") or {}
    described: dict = {
        "directory": str(directory),
        "kind": manifest.get("kind"),
        "created": manifest.get("created"),
        "source": manifest.get("source"),
        "parameters": int(sum(math.prod(shape) for shape, _ in arrays.values())),
        "parameter_bytes": int(sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in arrays.values())),
        "arrays": len(arrays),
        "dtypes": sorted({dtype for _, dtype in arrays.values()}),
    }
    check_config(directory, manifest.get("kind"), config, arrays)
    if manifest.get("kind") == "generator":
        described["generator"] = _generator_summary(config, arrays)
    elif manifest.get("kind") == "editors":
        described["editors"] = _editors_summary(config, arrays)
    elif manifest.get("kind") == "encoder":
        described["encoder"] = _encoder_summary(config, arrays)
    described["config"] = config
    return described


def _human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n:,} ({n / size:.1f}{unit})"
    return f"{n:,}"


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _format_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def format_info(described: dict) -> str:
    """The text `jaxedit info` prints for a `describe` result."""
    lines = [f"{described['directory']}: jaxedit {described['kind']} directory"]
    rows: list[tuple[str, str]] = []
    for kind in ("generator", "encoder"):
        for key, value in described.get(kind, {}).items():
            rows.append((key.replace("_", " "), _format_value(value)))
    if "editors" in described:
        editors = dict(described["editors"])
        attributes = editors.pop("attributes", None)
        for key, value in editors.items():
            rows.append((key.replace("_", " "), _format_value(value)))
        if attributes is not None:
            rows.append(("attributes", f"{len(attributes)}: " + ", ".join(attributes)))
    rows.append(
        (
            "stored arrays",
            f"{_human_count(described['parameters'])} in {described['arrays']} arrays, "
            f"{_human_bytes(described['parameter_bytes'])} ({', '.join(described['dtypes'])})",
        )
    )
    source = described.get("source")
    if isinstance(source, dict):
        rows.append(("source", str(source.get("path"))))
        if source.get("format"):
            rows.append(("source format", str(source["format"])))
        if source.get("sha256"):
            rows.append(("source sha256", str(source["sha256"])))
        for key, value in source.items():
            if key in ("path", "format", "sha256"):
                continue
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                for index, entry in enumerate(value):
                    label = f"source {key}" if index == 0 else ""
                    rows.append((label, _format_value(entry)))
            else:
                rows.append((f"source {key}", _format_value(value)))
    else:
        rows.append(("source", "none recorded (trained here)" if described["kind"] == "editors" else "none recorded"))
    rows.append(("created", str(described.get("created"))))
    width = max(len(name) for name, _ in rows)
    lines.extend(f"  {name:<{width}}  {value}" for name, value in rows)
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    """`jaxedit info DIR [--json]`."""
    parser = subparsers.add_parser(
        "info",
        help="what a converted or trained directory holds",
        description="Describe a jaxedit model directory: generator architecture, editors' preset and "
        "attributes, or encoder kind and sizes; parameter count, source file and its sha256, creation date. "
        "Arrays are not loaded.",
    )
    parser.add_argument("directory", metavar="DIR", help="a directory written by `jaxedit convert` or training")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import json

    described = describe(args.directory)
    print(json.dumps(described, indent=1, sort_keys=True) if args.json else format_info(described))
    return 0
