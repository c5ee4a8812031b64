"""What the editor's tests and benchmark serve: the small pSp fixture's decoder and encoder, and
random official-kind (W+) editors for all 40 attributes on its 10 x 32 latents."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from tests.helpers.paths import FIXTURES

PSP_FIXTURE = FIXTURES / "encoders" / "psp_encoder_small.pt"
PHOTO_FIXTURE = FIXTURES / "encoders" / "astronaut_face.jpg"


def random_classifier_params(preset, rng: np.random.Generator):
    """Classifier params of `preset`: LeCun-normal kernels, zero biases (drawn in numpy: no compiling)."""
    from jaxedit.latent.modules import classifier_from_preset, init_classifier_params

    shapes = jax.eval_shape(lambda: init_classifier_params(classifier_from_preset(preset), jax.random.key(0)))
    return jax.tree.map(
        lambda leaf: (
            (rng.standard_normal(leaf.shape) / np.sqrt(leaf.shape[0])).astype(np.float32)
            if len(leaf.shape) == 2
            else np.zeros(leaf.shape, np.float32)
        ),
        shapes,
    )


def random_official_editors(
    root: Path, num_ws: int, w_dim: int, seed: int = 0, generator=None, name: str = "editors"
) -> Path:
    """An editors directory: the official preset shrunk to W+ [num_ws, w_dim], a small classifier,
    one random transformer per CelebA attribute (N(0, 1) equalized kernels as the module's own
    initialiser draws them, biases N(0, 0.3^2) so that every edit also moves the latent's mean).
    `generator`: a loaded generator or an identity dict the editors record as theirs."""
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.latent import PRESETS, save_editors
    from jaxedit.latent.modules import init_transformer_params, transformer_from_preset

    preset = PRESETS["official"].replace(num_ws=num_ws, w_dim=w_dim, classifier_hidden=(16,))
    rng = np.random.default_rng(seed)
    classifier = random_classifier_params(preset, rng)
    shapes = jax.eval_shape(lambda: init_transformer_params(transformer_from_preset(preset), jax.random.key(0)))
    count = len(ATTRIBUTES)
    params = {
        "kernel": rng.standard_normal((count, *shapes["kernel"].shape)).astype(np.float32),
        "bias": (0.3 * rng.standard_normal((count, *shapes["bias"].shape))).astype(np.float32),
    }
    from jaxedit.latent.provenance import make_provenance

    provenance = make_provenance(preset, origin="trained", generator=generator) if generator is not None else None
    return save_editors(
        root / name, preset, classifier, params, list(ATTRIBUTES), training={"origin": "test"}, provenance=provenance
    )


def random_paper_editors(root: Path, w_dim: int, attributes: list[str], generator, seed: int = 0) -> Path:
    """An editors directory of paper-kind W editors on `w_dim` latents for `attributes`: the paper
    preset shrunk (classifier hidden 16, transformer hidden 32), a random classifier, LeCun-normal
    transformer kernels and N(0, 0.3^2) biases, so every edit moves the latent; recorded as made
    for `generator`."""
    from jaxedit.latent import PRESETS, save_editors
    from jaxedit.latent.modules import init_transformer_params, transformer_from_preset
    from jaxedit.latent.provenance import make_provenance

    preset = PRESETS["paper"].replace(w_dim=w_dim, classifier_hidden=(16,), transformer_hidden=32)
    rng = np.random.default_rng(seed)
    classifier = random_classifier_params(preset, rng)
    shapes = jax.eval_shape(lambda: init_transformer_params(transformer_from_preset(preset), jax.random.key(0)))
    params = jax.tree.map(
        lambda leaf: (
            (rng.standard_normal((len(attributes), *leaf.shape)) / np.sqrt(leaf.shape[0])).astype(np.float32)
            if len(leaf.shape) == 2
            else (0.3 * rng.standard_normal((len(attributes), *leaf.shape))).astype(np.float32)
        ),
        shapes,
    )
    return save_editors(
        root / "paper_editors",
        preset,
        classifier,
        params,
        attributes,
        training={"origin": "test"},
        provenance=make_provenance(preset, origin="trained", generator=generator),
    )


def editor_dirs(root: Path) -> tuple[Path, Path, Path]:
    """(generator dir, editors dir, encoder dir) converted from the small pSp fixture under `root`;
    the editors record that generator as theirs."""
    from jaxedit.convert.encoder import convert_encoder
    from jaxedit.convert.stylegan2 import convert_stylegan2

    gen_dir, encoder_dir = root / "generator", root / "encoder"
    from jaxedit.stylegan2 import load_generator

    convert_stylegan2(PSP_FIXTURE, gen_dir)
    convert_encoder(PSP_FIXTURE, encoder_dir)
    generator = load_generator(gen_dir)
    editors_dir = random_official_editors(root, generator.num_ws, generator.w_dim, generator=generator)
    return gen_dir, editors_dir, encoder_dir


def make_renderer(gen_dir: Path, editors_dir: Path, encoder_dir: Path | None = None, preview: str = "off", **kwargs):
    from jaxedit.encoders import load_encoder
    from jaxedit.latent import load_editors
    from jaxedit.serve.render import Renderer
    from jaxedit.stylegan2 import load_generator

    encoder = load_encoder(encoder_dir) if encoder_dir is not None else None
    return Renderer(load_generator(gen_dir), load_editors(editors_dir), encoder, preview=preview, **kwargs)


_BUILT: dict[str, tuple[Path, Path, Path]] = {}


def shared_editor_dirs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """`editor_dirs` built once per test session (under pytest's tmp base) for every module that asks."""
    if "dirs" not in _BUILT:
        _BUILT["dirs"] = editor_dirs(tmp_path_factory.mktemp("serve_models"))
    return _BUILT["dirs"]
