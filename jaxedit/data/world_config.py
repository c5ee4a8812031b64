"""What defines a synthetic world: its factors, the 40 attributes' specs and `WorldConfig`.

The world itself (`jaxedit.data.synthetic`) is built from these; docs/synthetic_world.md explains
the choices.
"""

from __future__ import annotations

import dataclasses

from jaxedit.errors import ConfigError

FACTORS: tuple[str, ...] = ("gender", "age", "smile", "beard", "glam", "hair_tone", "weight")
"""Shared latent factors; gender > 0 is male, age > 0 is old."""

# Approximate CelebA frequencies (share of the 202,599 images with the attribute).
CELEBA_MARGINALS: dict[str, float] = {
    "5_o_Clock_Shadow": 0.111,
    "Arched_Eyebrows": 0.267,
    "Attractive": 0.513,
    "Bags_Under_Eyes": 0.205,
    "Bald": 0.022,
    "Bangs": 0.152,
    "Big_Lips": 0.241,
    "Big_Nose": 0.235,
    "Black_Hair": 0.239,
    "Blond_Hair": 0.148,
    "Blurry": 0.051,
    "Brown_Hair": 0.205,
    "Bushy_Eyebrows": 0.142,
    "Chubby": 0.058,
    "Double_Chin": 0.047,
    "Eyeglasses": 0.065,
    "Goatee": 0.063,
    "Gray_Hair": 0.042,
    "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455,
    "Male": 0.417,
    "Mouth_Slightly_Open": 0.483,
    "Mustache": 0.042,
    "Narrow_Eyes": 0.115,
    "No_Beard": 0.835,
    "Oval_Face": 0.284,
    "Pale_Skin": 0.043,
    "Pointy_Nose": 0.277,
    "Receding_Hairline": 0.080,
    "Rosy_Cheeks": 0.066,
    "Sideburns": 0.057,
    "Smiling": 0.482,
    "Straight_Hair": 0.208,
    "Wavy_Hair": 0.320,
    "Wearing_Earrings": 0.189,
    "Wearing_Hat": 0.048,
    "Wearing_Lipstick": 0.472,
    "Wearing_Necklace": 0.123,
    "Wearing_Necktie": 0.073,
    "Young": 0.774,
}


@dataclasses.dataclass(frozen=True)
class AttributeSpec:
    """How one attribute is scored: factor loadings, weight of its own non-linear term, gate.

    gate: 0 none; +1 "and male" (soft minimum with Male's score); -1 "and female".
    negate: the attribute is the complement of the gated event (No_Beard = not(male and bearded)).
    group: W+ layer group read by the attribute: 0 coarse, 1 middle, 2 fine.
    """

    loadings: tuple[tuple[str, float], ...]
    own: float
    gate: int = 0
    negate: bool = False
    group: int = 1


def _spec(loadings: dict, own: float, gate: int = 0, negate: bool = False, group: int = 1) -> AttributeSpec:
    return AttributeSpec(tuple(loadings.items()), own, gate, negate, group)


COARSE, MIDDLE, FINE = 0, 1, 2
ATTRIBUTE_SPECS: dict[str, AttributeSpec] = {
    "Male": _spec({"gender": 1.0}, 0.35, group=COARSE),
    "Young": _spec({"age": -1.0}, 0.4, group=COARSE),
    "Smiling": _spec({"smile": 1.0}, 0.35),
    "High_Cheekbones": _spec({"smile": 0.8, "gender": -0.3}, 0.6),
    "Mouth_Slightly_Open": _spec({"smile": 0.6}, 0.8),
    "Narrow_Eyes": _spec({"smile": 0.3}, 0.9),
    "5_o_Clock_Shadow": _spec({"beard": 0.6}, 0.8, gate=+1),
    "Goatee": _spec({"beard": 1.0}, 0.6, gate=+1),
    "Mustache": _spec({"beard": 1.0, "age": 0.3}, 0.6, gate=+1),
    "Sideburns": _spec({"beard": 0.8}, 0.7, gate=+1),
    "No_Beard": _spec({"beard": 1.0}, 0.5, gate=+1, negate=True),
    "Heavy_Makeup": _spec({"glam": 1.0}, 0.5, gate=-1, group=FINE),
    "Wearing_Lipstick": _spec({"glam": 0.8}, 0.5, gate=-1, group=FINE),
    "Arched_Eyebrows": _spec({"gender": -0.6, "glam": 0.5}, 0.7),
    "Wearing_Earrings": _spec({"gender": -0.6, "glam": 0.3}, 0.8),
    "Wearing_Necklace": _spec({"gender": -0.4, "glam": 0.3}, 0.9),
    "Rosy_Cheeks": _spec({"gender": -0.5, "glam": 0.5}, 0.7, group=FINE),
    "Attractive": _spec({"age": -0.6, "gender": -0.5, "glam": 0.4, "weight": -0.3}, 0.5),
    "Gray_Hair": _spec({"age": 1.0, "hair_tone": 0.3}, 0.5, group=FINE),
    "Bald": _spec({"age": 0.9}, 0.6, gate=+1, group=COARSE),
    "Receding_Hairline": _spec({"age": 0.8, "gender": 0.3}, 0.7, group=COARSE),
    "Bags_Under_Eyes": _spec({"age": 0.6, "gender": 0.4}, 0.7),
    "Double_Chin": _spec({"weight": 0.8, "age": 0.5}, 0.5, group=COARSE),
    "Chubby": _spec({"weight": 1.0, "age": 0.3}, 0.5, group=COARSE),
    "Oval_Face": _spec({"weight": -0.4, "gender": -0.2}, 0.9, group=COARSE),
    "Big_Nose": _spec({"gender": 0.5, "age": 0.4}, 0.8, group=COARSE),
    "Pointy_Nose": _spec({"gender": -0.4}, 0.9, group=COARSE),
    "Big_Lips": _spec({"gender": -0.2}, 1.0),
    "Bushy_Eyebrows": _spec({"gender": 0.5}, 0.8),
    "Wearing_Necktie": _spec({"age": 0.4}, 0.8, gate=+1),
    "Blond_Hair": _spec({"hair_tone": 1.0, "gender": -0.5}, 0.5, group=FINE),
    "Black_Hair": _spec({"hair_tone": -1.0}, 0.6, group=FINE),
    "Brown_Hair": _spec({"hair_tone": 0.2}, 1.0, group=FINE),
    "Pale_Skin": _spec({"hair_tone": 0.2}, 1.0, group=FINE),
    "Bangs": _spec({"gender": -0.3}, 0.9),
    "Straight_Hair": _spec({}, 1.0),
    "Wavy_Hair": _spec({"gender": -0.6}, 0.8),
    "Wearing_Hat": _spec({}, 1.0, group=COARSE),
    "Eyeglasses": _spec({"age": 0.4, "gender": 0.3}, 0.9, group=COARSE),
    "Blurry": _spec({}, 1.0, group=FINE),
}

CORRELATED_PAIRS: tuple[tuple[str, str, int], ...] = (
    ("Male", "No_Beard", -1),
    ("Male", "Goatee", +1),
    ("Male", "Mustache", +1),
    ("Male", "Sideburns", +1),
    ("Male", "5_o_Clock_Shadow", +1),
    ("Male", "Heavy_Makeup", -1),
    ("Male", "Wearing_Lipstick", -1),
    ("Male", "Arched_Eyebrows", -1),
    ("Male", "Wearing_Earrings", -1),
    ("Male", "Bald", +1),
    ("Young", "Gray_Hair", -1),
    ("Young", "Bald", -1),
    ("Young", "Receding_Hairline", -1),
    ("Young", "Attractive", +1),
    ("Young", "Double_Chin", -1),
    ("Smiling", "High_Cheekbones", +1),
    ("Smiling", "Mouth_Slightly_Open", +1),
    ("Heavy_Makeup", "Wearing_Lipstick", +1),
    ("Goatee", "No_Beard", -1),
    ("Chubby", "Double_Chin", +1),
    ("Blond_Hair", "Black_Hair", -1),
)
"""(a, b, sign): pairs whose label correlation has this sign in the world (and in CelebA)."""

OWN_DIM = 4
OWN_HIDDEN = 16
SOFTMIN_TEMPERATURE = 0.15


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a synthetic world; the same config and seed give the same world.

    seed: one integer seeds the mapping network (when random), the projections and the identity.
    z_dim, w_dim, mapping_layers: the random mapping network (ignored with a given mapping).
    num_ws: W+ depth (18 for 1024 px). w_plus_jitter: per-layer N(0, jitter * std_W) added in W+.
    subspace_dim: P, principal components of W that the attributes read (the rest carry identity);
      0 (default) picks min(64, w_dim // 4), at least 11 (7 factors + a 4-d own term).
    sharpness: logits = sharpness * standardised score (how confident the stand-in annotator is).
    identity_dim: length of the identity embedding (random Fourier features).
    calibration_samples: latents used for PCA, standardisation and the frequency biases.
    """

    seed: int = 0
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    num_ws: int = 18
    w_plus_jitter: float = 0.0
    subspace_dim: int = 0
    sharpness: float = 4.0
    identity_dim: int = 128
    calibration_samples: int = 20000

    def __post_init__(self) -> None:
        for name in ("z_dim", "w_dim", "mapping_layers", "num_ws", "identity_dim", "calibration_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"synthetic world: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.subspace_dim, int) or self.subspace_dim < 0:
            raise ConfigError(
                f"synthetic world: subspace_dim must be a non-negative integer, got {self.subspace_dim!r}"
            )
        if self.subspace_dim == 0:
            object.__setattr__(self, "subspace_dim", max(len(FACTORS) + OWN_DIM, min(64, self.w_dim // 4)))
        if self.subspace_dim < len(FACTORS) + OWN_DIM or self.subspace_dim >= self.w_dim:
            raise ConfigError(
                f"synthetic world: subspace_dim {self.subspace_dim} must be in [{len(FACTORS) + OWN_DIM}, w_dim={self.w_dim}) "
                f"(w_dim must be at least {len(FACTORS) + OWN_DIM + 1})"
            )
        if not self.sharpness > 0 or self.w_plus_jitter < 0:
            raise ConfigError("synthetic world: sharpness must be > 0 and w_plus_jitter >= 0")
        if self.calibration_samples < 1000:
            raise ConfigError(f"synthetic world: calibration_samples {self.calibration_samples} < 1000")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
