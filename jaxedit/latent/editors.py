"""The on-disk editors format (a classifier + K attribute transformers) and `load_editors`.

An editors directory is a `jaxedit.modeldir` model directory of kind "editors"::

    DIR/jaxedit.json  config = {
        "preset": "official" | "paper" | ...,     the preset's name
        "method": {...},                          every field of the MethodPreset (`to_dict`)
        "classifier": {...}, "transformer": {...},  module configs (`modules.module_config`)
        "attributes": ["Smiling", ...],           CelebA names, in the order of the stacked axis
        "latent_shape": [18, 512] | [512],
        "training": {...},                        free-form: how these editors were made
        "provenance": {...},                      what they were made for: preset, latent space, the
                                                  synthetic world or the generator (`jaxedit.latent.provenance`;
                                                  absent in directories written before it existed)
    }
    DIR/params/       {"classifier": {...}, "transformers": {... leaves [K, ...]}}
                      ("transformers" is absent when K = 0: a classifier alone)

Training (`save_editors`) and conversion (`jaxedit.convert.latent_transformer`) both write it
through `save_editors`, so nothing downstream can tell converted editors from trained ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import attribute_name
from jaxedit.errors import AttributeNameError, ConfigError
from jaxedit.latent.modules import (
    LatentClassifier,
    LatentTransformer,
    classifier_from_preset,
    init_classifier_params,
    init_transformer_params,
    module_config,
    module_from_config,
    transformer_from_preset,
)
from jaxedit.latent.presets import MethodPreset
from jaxedit.latent.provenance import read_provenance
from jaxedit.modeldir import read_model_dir, write_model_dir

EDITORS_KIND = "editors"


@dataclasses.dataclass(frozen=True)
class Editors:
    """A loaded editors directory (or one built in memory by training).

    attributes: CelebA names, one per slot of the stacked transformer params, in order.
    preset: the `MethodPreset` the editors were made with (its `edit_layers`, `edit_alpha_range`).
    classifier_module / classifier_params: C, logits [B, num_attributes] from latents.
    transformer_module / transformer_params: T, params stacked along a leading attribute axis
      [K, ...] (None when K = 0).
    latent_shape: (512,) for W editors, (num_ws, 512) for W+ editors.
    config / source: the manifest's config and source (None for trained editors).
    """

    attributes: tuple[str, ...]
    preset: MethodPreset
    classifier_module: LatentClassifier
    classifier_params: Any
    transformer_module: LatentTransformer
    transformer_params: Any
    config: dict
    source: dict | None = None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.preset.latent_shape

    @property
    def training(self) -> dict:
        return dict(self.config.get("training") or {})

    @property
    def provenance(self) -> dict | None:
        """What the editors were made for (`jaxedit.latent.provenance`); None when not recorded."""
        return read_provenance(self.config, "editors")

    def slot_of(self, name_or_index: str | int) -> int:
        """Position in the stacked axis of an attribute given by CelebA name or CelebA index."""
        name = attribute_name(name_or_index)
        if name not in self.attributes:
            covered = ", ".join(self.attributes) if self.attributes else "none"
            raise AttributeNameError(f"these editors have no transformer for {name!r}; they cover: {covered}")
        return self.attributes.index(name)

    def transformer_params_for(self, name_or_index: str | int) -> Any:
        """The params of one attribute's transformer (CelebA name, case-insensitive, or CelebA index)."""
        k = self.slot_of(name_or_index)
        return jax.tree.map(lambda leaf: leaf[k], self.transformer_params)

    def classify(self, latents: jax.Array) -> jax.Array:
        """C(latents): [B, *latent_shape] -> logits [B, num_attributes]."""
        return self.classifier_module.apply({"params": self.classifier_params}, jnp.asarray(latents, jnp.float32))

    def transform(self, latents: jax.Array, name_or_index: str | int, alpha: Any) -> jax.Array:
        """T_attribute(latents, alpha) on every W+ layer (no layer restriction; see `jaxedit.editing.edits`)."""
        params = self.transformer_params_for(name_or_index)
        return self.transformer_module.apply(
            {"params": params}, jnp.asarray(latents, jnp.float32), jnp.asarray(alpha, jnp.float32)
        )


def _flatten_shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
    if isinstance(tree, dict):
        out: dict[str, tuple[int, ...]] = {}
        for key in sorted(tree):
            out.update(_flatten_shapes(tree[key], f"{prefix}/{key}" if prefix else str(key)))
        return out
    shape = tree.shape if hasattr(tree, "shape") else np.shape(tree)
    return {prefix: tuple(int(s) for s in shape)}


def check_param_shapes(
    what: str, params: Any, expected: Any, leading: tuple[int, ...] = (), flat: bool = False
) -> None:
    """ConfigError (one line) unless `params` has exactly the keys of `expected`, each of shape
    `leading + expected shape`. `flat`: params is already {"a/b/kernel": shape}."""
    got = dict(params) if flat else _flatten_shapes(params)
    want = {k: leading + v for k, v in _flatten_shapes(expected).items()}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise ConfigError(f"{what}: params keys differ from the module (missing {missing}, unexpected {extra})")
    for key in sorted(want):
        if got[key] != want[key]:
            raise ConfigError(f"{what}: params {key} has shape {list(got[key])}, expected {list(want[key])}")


def expected_classifier_shapes(module: LatentClassifier) -> Any:
    return jax.eval_shape(lambda: init_classifier_params(module, jax.random.key(0)))


def expected_transformer_shapes(module: LatentTransformer) -> Any:
    return jax.eval_shape(lambda: init_transformer_params(module, jax.random.key(0)))


def _as_float32(tree: Any, to_device: bool) -> Any:
    convert = (lambda x: jnp.asarray(x, jnp.float32)) if to_device else (lambda x: np.asarray(x, np.float32))
    return jax.tree.map(convert, tree)


def save_editors(
    destination: str | os.PathLike,
    preset: MethodPreset,
    classifier_params: Any,
    transformer_params: Any | None,
    attributes: Sequence[str | int],
    training: dict | None = None,
    source: dict | None = None,
    overwrite: bool = False,
    provenance: dict | None = None,
) -> Path:
    """Write an editors directory atomically (see the module docstring); returns its path.

    transformer_params: stacked [K, ...] params of K transformers (None or K = 0: classifier only);
    attributes: K CelebA names or indices, in the order of the stacked axis.
    training: free-form JSON-ready info (steps, seed, data, ...); source: {"path", "sha256", "format"}
    of converted files; provenance: what they were made for (`jaxedit.latent.provenance.make_provenance`).
    """
    names = [attribute_name(a) for a in attributes]
    if len(set(names)) != len(names):
        raise AttributeNameError(f"attribute list {names} names an attribute twice")
    classifier = classifier_from_preset(preset)
    transformer = transformer_from_preset(preset)
    check_param_shapes("classifier", classifier_params, expected_classifier_shapes(classifier))
    params = {"classifier": _as_float32(classifier_params, to_device=False)}
    if names:
        if transformer_params is None:
            raise ConfigError(f"{len(names)} attributes named but no transformer params given")
        check_param_shapes(
            "transformers", transformer_params, expected_transformer_shapes(transformer), leading=(len(names),)
        )
        params["transformers"] = _as_float32(transformer_params, to_device=False)
    config = {
        "preset": preset.name,
        "method": preset.to_dict(),
        "classifier": module_config(classifier),
        "transformer": module_config(transformer),
        "attributes": names,
        "latent_shape": list(preset.latent_shape),
        "training": dict(training or {}),
    }
    if provenance is not None:
        config["provenance"] = dict(provenance)
    return write_model_dir(
        destination, kind=EDITORS_KIND, config=config, params=params, source=source, overwrite=overwrite
    )


def editors_from_params(
    preset: MethodPreset,
    classifier_params: Any,
    transformer_params: Any | None,
    attributes: Sequence[str | int],
    training: dict | None = None,
    provenance: dict | None = None,
) -> Editors:
    """An in-memory `Editors` (what `load_editors` would return after `save_editors`)."""
    names = tuple(attribute_name(a) for a in attributes)
    classifier = classifier_from_preset(preset)
    transformer = transformer_from_preset(preset)
    check_param_shapes("classifier", classifier_params, expected_classifier_shapes(classifier))
    if names:
        check_param_shapes(
            "transformers", transformer_params, expected_transformer_shapes(transformer), leading=(len(names),)
        )
    config = {
        "preset": preset.name,
        "method": preset.to_dict(),
        "attributes": list(names),
        "training": dict(training or {}),
    }
    if provenance is not None:
        config["provenance"] = dict(provenance)
    return Editors(
        attributes=names,
        preset=preset,
        classifier_module=classifier,
        classifier_params=_as_float32(classifier_params, to_device=True),
        transformer_module=transformer,
        transformer_params=_as_float32(transformer_params, to_device=True) if names else None,
        config=config,
    )


def editors_config(config: Any, where: str) -> tuple[MethodPreset, LatentClassifier, LatentTransformer, tuple]:
    """(preset, classifier module, transformer module, attribute names) of an editors manifest's
    config, every part checked (sizes, the preset, module configs agreeing with it, distinct
    attribute names); one-line ConfigError / AttributeNameError naming `where` otherwise."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: manifest config is a {type(config).__name__}, expected an object")
    for key in ("method", "classifier", "transformer", "attributes"):
        if key not in config:
            raise ConfigError(f"{where}: manifest config has no {key!r}")
    for key in ("method", "classifier", "transformer"):
        if not isinstance(config[key], dict):
            raise ConfigError(f"{where}: manifest config {key!r} is a {type(config[key]).__name__}, expected an object")
    _check_sizes(config["method"], where)
    try:
        preset = MethodPreset.from_dict(config["method"])
    except ConfigError as error:
        raise ConfigError(f"{where}: method preset: {error}") from None
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ConfigError(f"{where}: bad method preset ({type(error).__name__}: {error})") from None
    try:
        classifier = module_from_config(config["classifier"])
        transformer = module_from_config(config["transformer"])
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"{where}: bad module config ({error})") from error
    if classifier != classifier_from_preset(preset) or transformer != transformer_from_preset(preset):
        raise ConfigError(f"{where}: module configs disagree with the method preset {preset.name!r}")
    read_provenance(config, where)
    return preset, classifier, transformer, _attribute_names(config["attributes"], where)


def check_stored_shapes(
    where: str,
    shapes: dict[str, tuple[int, ...]],
    classifier: LatentClassifier,
    transformer: LatentTransformer,
    names: Sequence[str],
) -> None:
    """Stored array shapes {"classifier/.../kernel": shape, "transformers/...": [K, ...]} (array
    metadata, nothing loaded) against the modules and the K attribute names; one-line ConfigError."""

    def part(prefix: str) -> dict:
        return {k[len(prefix) + 1 :]: v for k, v in shapes.items() if k.startswith(prefix + "/")}

    check_param_shapes(f"{where} classifier", part("classifier"), expected_classifier_shapes(classifier), flat=True)
    if names:
        check_param_shapes(
            f"{where} transformers",
            part("transformers"),
            expected_transformer_shapes(transformer),
            leading=(len(names),),
            flat=True,
        )


def load_editors(directory: str | os.PathLike) -> Editors:
    """Load an editors directory written by training or by `jaxedit convert latent-transformer`.

    Checks the manifest, the preset, the attribute names and every param shape against the
    modules; raises `ConfigError` / `AttributeNameError` with a one-line message otherwise.
    """
    manifest, params = read_model_dir(directory, expected_kind=EDITORS_KIND)
    config = manifest.get("config") or {}
    where = f"editors {directory}"
    preset, classifier, transformer, names = editors_config(config, where)
    if not isinstance(params, dict) or "classifier" not in params:
        raise ConfigError(f"{where}: params have no 'classifier'")
    check_param_shapes(f"{where} classifier", params["classifier"], expected_classifier_shapes(classifier))
    transformer_params = params.get("transformers")
    if names:
        if transformer_params is None:
            raise ConfigError(f"{where}: {len(names)} attributes listed but params have no 'transformers'")
        check_param_shapes(
            f"{where} transformers", transformer_params, expected_transformer_shapes(transformer), leading=(len(names),)
        )
    return Editors(
        attributes=names,
        preset=preset,
        classifier_module=classifier,
        classifier_params=_as_float32(params["classifier"], to_device=True),
        transformer_module=transformer,
        transformer_params=_as_float32(transformer_params, to_device=True) if names else None,
        config=config,
        source=manifest.get("source"),
    )


# Upper bounds on the sizes a manifest may state (the modules are sized from them before the
# saved arrays are compared with them).
_SIZE_LIMITS = {
    "num_ws": 64,
    "w_dim": 8192,
    "num_attributes": 1024,
    "transformer_hidden": 65536,
}
_MAX_HIDDEN_LAYERS = 16
_MAX_HIDDEN_WIDTH = 65536


def _check_sizes(method: dict, where: str) -> None:
    """Refuse a method preset whose module sizes are beyond any real model (types are checked by
    `MethodPreset` itself)."""
    for key, limit in _SIZE_LIMITS.items():
        value = method.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ConfigError(f"{where}: method {key} is {value}, expected at most {limit}")
    hidden = method.get("classifier_hidden")
    if isinstance(hidden, list):
        if len(hidden) > _MAX_HIDDEN_LAYERS:
            raise ConfigError(
                f"{where}: method classifier_hidden has {len(hidden)} layers, expected at most {_MAX_HIDDEN_LAYERS}"
            )
        if any(isinstance(h, int) and h > _MAX_HIDDEN_WIDTH for h in hidden):
            raise ConfigError(f"{where}: method classifier_hidden widths must be at most {_MAX_HIDDEN_WIDTH}")


def _attribute_names(attributes: Any, where: str) -> tuple[str, ...]:
    """The manifest's attribute list as CelebA names: a list of distinct names (or indices)."""
    if not isinstance(attributes, list) or any(
        isinstance(a, bool) or not isinstance(a, (str, int)) for a in attributes
    ):
        raise ConfigError(f"{where}: manifest attributes must be a list of CelebA attribute names")
    if len(attributes) > _SIZE_LIMITS["num_attributes"]:
        raise ConfigError(
            f"{where}: manifest lists {len(attributes)} attributes, expected at most {_SIZE_LIMITS['num_attributes']}"
        )
    names = tuple(attribute_name(a) for a in attributes)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: manifest attributes name {name!r} more than once")
        seen.add(name)
    return names


__all__ = ["Editors", "save_editors", "load_editors", "editors_from_params", "check_param_shapes"]
