"""The method on latents, pure: classifier C, transformers T, losses, presets, the editors format.

- `presets`: `MethodPreset`, `PRESETS` ("paper", "official"), `get_preset`.
- `modules`: linen `LatentClassifier`, `LatentTransformer`.
- `losses`: each loss of both presets as a pure function, `training_alpha`, `correlation_matrix`.
- `editors`: the on-disk editors format, `save_editors`, `load_editors` -> `Editors`.
"""

from jaxedit.latent.editors import Editors, editors_from_params, load_editors, save_editors
from jaxedit.latent.modules import LatentClassifier, LatentTransformer, classifier_from_preset, transformer_from_preset
from jaxedit.latent.presets import PRESETS, MethodPreset, get_preset

__all__ = [
    "PRESETS",
    "MethodPreset",
    "get_preset",
    "LatentClassifier",
    "LatentTransformer",
    "classifier_from_preset",
    "transformer_from_preset",
    "load_editors",
    "save_editors",
    "editors_from_params",
    "Editors",
]
