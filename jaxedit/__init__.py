"""jaxedit: non-linear, disentangled StyleGAN2 face editing in JAX/Flax.

The public API, imported lazily so that `import jaxedit` stays cheap:

- `load_generator(dir)`: a converted StyleGAN2 (`jaxedit.stylegan2`).
- `load_editors(dir)`: a trained or converted latent classifier + 40 transformers (`jaxedit.latent`).
- `load_encoder(dir)`: a converted pSp / e4e encoder, `encode(images [B, H, W, 3]) -> ws [B, num_ws, w_dim]`.
- `load_photo(path)`, `align_face(image, landmarks)`, `paste_back(photo, edited, transform)`: a user's
  photo in (EXIF orientation, any mode), FFHQ alignment, and the edited face blended back into it.
- `ATTRIBUTES`, `attribute_index`: the 40 CelebA attribute names.
- `jaxedit.editing`: single, sequential, progressive and layer-range edits (`Editor`, `get_editor`,
  `apply_edit`, `apply_sequence`, `sweep`, `restrict_to_layers` are re-exported here).
"""

from jaxedit.attributes import ATTRIBUTES, attribute_index, attribute_name
from jaxedit.errors import JaxeditError

__version__ = "0.1.0"

_LAZY = {
    "load_generator": "jaxedit.stylegan2",
    "load_editors": "jaxedit.latent",
    "load_encoder": "jaxedit.encoders",
    "load_photo": "jaxedit.encoders.photo",
    "align_face": "jaxedit.encoders.align",
    "paste_back": "jaxedit.encoders.paste",
    "Editor": "jaxedit.editing.edits",
    "get_editor": "jaxedit.editing.edits",
    "apply_edit": "jaxedit.editing.edits",
    "apply_sequence": "jaxedit.editing.edits",
    "sweep": "jaxedit.editing.edits",
    "restrict_to_layers": "jaxedit.editing.edits",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxedit' has no attribute {name!r}")


__all__ = [
    "ATTRIBUTES",
    "attribute_index",
    "attribute_name",
    "JaxeditError",
    "load_generator",
    "load_editors",
    "load_encoder",
    "load_photo",
    "align_face",
    "paste_back",
    "Editor",
    "get_editor",
    "apply_edit",
    "apply_sequence",
    "sweep",
    "restrict_to_layers",
    "__version__",
]
