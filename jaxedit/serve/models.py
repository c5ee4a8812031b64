"""What `jaxedit serve` loads: a generator and editors, or a training run directory.

- `GEN_DIR EDITORS_DIR`: a converted generator (`jaxedit convert stylegan2`) and editors.
- `RUN_DIR` (written by `python -m train`): `RUN_DIR/editors`, and for the face the generator the
  run was trained on when it recorded one, else the schematic renderer of the synthetic world the
  editors were trained in (`jaxedit.data.schematic`), which the page labels as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxedit.errors import ConfigError

SCHEMATIC_RESOLUTION = 256


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "editors").is_dir()


def load_run(run_dir: str | Path, resolution: int = SCHEMATIC_RESOLUTION) -> tuple[Any, Any]:
    """(face, editors) of a training run directory (module docstring)."""
    from jaxedit.latent import load_editors

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such directory")
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir}: not a run directory (no editors/ inside); give GEN_DIR EDITORS_DIR instead")
    editors = load_editors(run_dir / "editors")
    generator_dir = str(editors.training.get("generator") or "")
    if generator_dir:
        from jaxedit.stylegan2 import load_generator

        if not Path(generator_dir).is_dir():
            raise ConfigError(f"{run_dir}: trained on generator {generator_dir}, which is not there any more")
        return load_generator(generator_dir), editors
    return schematic_face(editors, resolution), editors


def schematic_face(editors: Any, resolution: int = SCHEMATIC_RESOLUTION) -> Any:
    """The schematic renderer of the synthetic world `editors` were trained in."""
    from jaxedit.data.schematic_renderer import SchematicRenderer
    from jaxedit.eval.suite import synthetic_world_for

    return SchematicRenderer(synthetic_world_for(editors), resolution=resolution)


def load_models(paths: list[str], encoder_dir: str | None = None) -> tuple[Any, Any, Any]:
    """(face, editors, encoder or None) from `RUN_DIR` or `GEN_DIR EDITORS_DIR` (+ an encoder directory)."""
    if len(paths) == 1:
        face, editors = load_run(paths[0])
    elif len(paths) == 2:
        from jaxedit.latent import load_editors
        from jaxedit.stylegan2 import load_generator

        face, editors = load_generator(paths[0]), load_editors(paths[1])
    else:
        raise ConfigError(f"expected RUN_DIR or GEN_DIR EDITORS_DIR, got {len(paths)} paths")
    encoder = None
    if encoder_dir is not None:
        from jaxedit.encoders import load_encoder

        encoder = load_encoder(encoder_dir)
    return face, editors, encoder


def face_detector() -> Any:
    """dlib's landmark detector when the `faces` extra is installed, else None (photos are centre-cropped)."""
    try:
        from jaxedit.encoders.landmarks import LandmarkDetector

        return LandmarkDetector()
    except (ImportError, ConfigError):
        return None
