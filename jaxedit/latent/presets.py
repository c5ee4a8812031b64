"""The two method presets of docs/method.md as frozen dataclasses.

`PRESETS["paper"]` is the paper (Yao et al., ICIP 2021): W space, the paper's losses.
`PRESETS["official"]` is the authors' public latent-transformer code (ICCV 2021): W+ 18 x 512.

Every number the method needs lives here (latent shape, module sizes, loss weights, optimizer,
schedule, edit range), so training, conversion and editing read one object. Smaller variants
(the test fixtures use 2 W+ layers and a [1024, 64, 32, 40] classifier) are `preset.replace(...)`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxedit.config import check_types, from_dict, override, to_dict
from jaxedit.errors import ConfigError

SPACES = ("w", "w+")
LOSS_KINDS = ("paper", "official")
TRANSFORMER_KINDS = ("paper", "official")
ACTIVATIONS = ("relu", "leaky_relu")
RECON_FORMS = ("mse", "norm")


@dataclasses.dataclass(frozen=True)
class MethodPreset:
    """All numbers of one variant of the method.

    Latent space:
      space: "w" (one 512-vector, latents [B, w_dim]) or "w+" (latents [B, num_ws, w_dim]).
      num_ws: number of W+ layers (ignored for "w"); w_dim: width of one style vector.

    Classifier C (`LatentClassifier`): Dense layers prod(latent_shape) -> *classifier_hidden ->
      num_attributes, `classifier_activation` between them (none after the last), logits out.

    Transformer T (`LatentTransformer`), `transformer_kind`:
      "paper": T(w, a) = w + a * H(w), H = Dense(transformer_hidden) -> LeakyReLU(slope) -> Dense(w_dim).
      "official": T(w, a) = w + a * cat_l(Dense_l(w_l)), one equalized-lr Linear(w_dim, w_dim) per W+ layer.

    Losses (`loss_kind`, see `jaxedit.latent.losses`): total = class_weight * class +
      attribute_weight * attribute + recon_weight * recon. `corr_threshold`: |corr| >= threshold
      counts as fully correlated (mask 0), as in the official `get_correlation`.
      `recon_form`: "mse" = mean((T(w) - w)^2) over every element of the latent (and the batch);
      "norm" = mean_b ||T(w) - w||_2, the literal reading of the paper's `E||T(w) - w||_2`.

    Transformer optimizer: Adam(lr, beta1, beta2, eps) with `weight_decay` added to the gradient
      before Adam (torch.optim.Adam semantics, not AdamW); constant lr. `batch_size`, `epochs`.

    Classifier training: Adam(classifier_lr) with `classifier_weight_decay` added to the gradient,
      lr x `classifier_lr_decay` after `classifier_decay_epochs` epochs, `classifier_batch_size`,
      `classifier_epochs`, BCE-with-logits on the 40 labels.

    Data: the first `train_fraction` of the samples train, the rest are held out.

    Editing: alpha in `edit_alpha_range` (`table_alpha` is the strength of the paper's Table 1);
      `edit_layers` = (first, stop) half-open range of W+ layers that take the edit (the official
      code edits layers 0..10, i.e. (0, 11)); None edits the whole latent. A range reaching past
      num_ws is clipped to it (`edit_layer_mask`).

    Choices of the `paper` preset where the paper is silent:
      - C hidden sizes (512, 256): Dense 512 -> 512 -> 256 -> 40, ReLU between.
      - H = Dense(512) -> LeakyReLU(0.2) -> Dense(512): hidden width 512, slope 0.2, linear output.
      - class loss: BCE of sigmoid(C(T(w)))[j] towards the flipped prediction round(clamp(p + a, 0, 1)).
      - attribute loss on probabilities sigmoid(C(.)) (the paper's C outputs probabilities);
        `E||C(T(w))[i] - C(w)[i]||` read as the batch mean of the absolute difference.
      - recon loss `E||T(w) - w||_2` read as the mean squared error over the latent's elements
        (`recon_form="mse"`, what the authors' public code computes), weight 100. The literal
        unsquared norm (`recon_form="norm"`) costs 100 per sample for any move, so T learns not to
        move (docs/synthetic_world.md measures it); it stays available for that ablation.
      - C training: the official schedule (batch 256, 20 epochs, Adam 1e-4, decay 5e-4, x0.1 at 10).
    """

    name: str
    space: str
    num_ws: int
    w_dim: int
    num_attributes: int
    classifier_hidden: tuple[int, ...]
    classifier_activation: str
    classifier_negative_slope: float
    transformer_kind: str
    transformer_hidden: int
    transformer_negative_slope: float
    loss_kind: str
    class_weight: float
    attribute_weight: float
    recon_weight: float
    recon_form: str
    corr_threshold: float
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    batch_size: int
    epochs: int
    classifier_lr: float
    classifier_weight_decay: float
    classifier_batch_size: int
    classifier_epochs: int
    classifier_decay_epochs: int
    classifier_lr_decay: float
    train_fraction: float
    edit_alpha_range: tuple[float, float]
    table_alpha: float
    edit_layers: tuple[int, int] | None

    def __post_init__(self) -> None:
        check_types(self)
        if self.space not in SPACES:
            raise ConfigError(f"preset {self.name!r}: space {self.space!r} is not one of {SPACES}")
        if self.loss_kind not in LOSS_KINDS:
            raise ConfigError(f"preset {self.name!r}: loss_kind {self.loss_kind!r} is not one of {LOSS_KINDS}")
        if self.recon_form not in RECON_FORMS:
            raise ConfigError(f"preset {self.name!r}: recon_form {self.recon_form!r} is not one of {RECON_FORMS}")
        if self.transformer_kind not in TRANSFORMER_KINDS:
            raise ConfigError(
                f"preset {self.name!r}: transformer_kind {self.transformer_kind!r} is not one of {TRANSFORMER_KINDS}"
            )
        if self.transformer_kind == "official" and self.space != "w+":
            raise ConfigError(f"preset {self.name!r}: the official per-layer transformer needs space 'w+'")
        if self.classifier_activation not in ACTIVATIONS:
            raise ConfigError(
                f"preset {self.name!r}: classifier_activation {self.classifier_activation!r} is not one of {ACTIVATIONS}"
            )
        for field in (
            "num_ws",
            "w_dim",
            "num_attributes",
            "batch_size",
            "epochs",
            "classifier_batch_size",
            "classifier_epochs",
            "transformer_hidden",
        ):
            value = getattr(self, field)
            if value < 1:
                raise ConfigError(f"preset {self.name!r}: {field} must be a positive integer, got {value!r}")
        if any(h < 1 for h in self.classifier_hidden):
            raise ConfigError(
                f"preset {self.name!r}: classifier_hidden must be positive integers, got {self.classifier_hidden!r}"
            )
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"preset {self.name!r}: train_fraction must be in (0, 1], got {self.train_fraction}")
        for field in ("lr", "classifier_lr"):
            if not getattr(self, field) > 0:
                raise ConfigError(f"preset {self.name!r}: {field} must be > 0, got {getattr(self, field)}")
        if self.edit_layers is not None:
            first, stop = self.edit_layers
            if self.space != "w+" or not 0 <= first < min(stop, self.num_ws):
                raise ConfigError(
                    f"preset {self.name!r}: edit_layers {self.edit_layers} selects no W+ layer of 0..{self.num_ws - 1}"
                )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: (w_dim,) in W, (num_ws, w_dim) in W+."""
        return (self.w_dim,) if self.space == "w" else (self.num_ws, self.w_dim)

    @property
    def latent_size(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def classifier_widths(self) -> tuple[int, ...]:
        """(input, *hidden, num_attributes): the official (9216, 2048, 512, 40)."""
        return (self.latent_size, *self.classifier_hidden, self.num_attributes)

    def edit_layer_mask(self) -> tuple[bool, ...] | None:
        """Per W+ layer, whether it takes the edit (None in W or when every layer does)."""
        if self.edit_layers is None:
            return None
        first, stop = self.edit_layers
        return tuple(first <= layer < stop for layer in range(self.num_ws))

    def describe_training(self) -> str:
        """One line of the transformer training settings: loss weights, recon form, optimizer."""
        form = {"mse": "mean squared error over the latent's elements", "norm": "batch mean of ||T(w) - w||_2"}
        return (
            f"preset {self.name}: loss = {self.class_weight:g} x class + {self.attribute_weight:g} x attribute + "
            f"{self.recon_weight:g} x recon (recon_form {self.recon_form}: {form[self.recon_form]}); "
            f"Adam lr {self.lr:g}, weight decay {self.weight_decay:g}, batch {self.batch_size}, {self.epochs} epochs"
        )

    def replace(self, **changes: Any) -> MethodPreset:
        """A copy with some fields changed (`jaxedit.config.override`: validated again)."""
        return override(self, changes)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MethodPreset:
        """Inverse of `to_dict` (`jaxedit.config.from_dict`); one-line ConfigError on missing or unknown fields."""
        data = dict(data)
        if "recon_form" not in data and data.get("loss_kind") in LOSS_KINDS:
            # Manifests written before the field existed: the form those models were trained with.
            data["recon_form"] = "norm" if data["loss_kind"] == "paper" else "mse"
        return from_dict(cls, data)


PAPER = MethodPreset(
    name="paper",
    space="w",
    num_ws=1,
    w_dim=512,
    num_attributes=40,
    # The paper says "3 linear layers with ReLU" without sizes: our choice 512 -> 512 -> 256 -> 40.
    classifier_hidden=(512, 256),
    classifier_activation="relu",
    classifier_negative_slope=0.0,
    transformer_kind="paper",
    # H = Dense(512) -> LeakyReLU(0.2) -> Dense(512); the paper names neither width nor slope.
    transformer_hidden=512,
    transformer_negative_slope=0.2,
    loss_kind="paper",
    class_weight=1.0,
    attribute_weight=1.0,
    recon_weight=100.0,
    recon_form="mse",
    corr_threshold=1.0,
    lr=1e-4,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    batch_size=16,
    epochs=10,
    # The paper does not say how C was trained: we use the official classifier schedule.
    classifier_lr=1e-4,
    classifier_weight_decay=5e-4,
    classifier_batch_size=256,
    classifier_epochs=20,
    classifier_decay_epochs=10,
    classifier_lr_decay=0.1,
    train_fraction=0.9,
    edit_alpha_range=(-1.5, 1.5),
    table_alpha=1.25,
    edit_layers=None,
)

OFFICIAL = MethodPreset(
    name="official",
    space="w+",
    num_ws=18,
    w_dim=512,
    num_attributes=40,
    classifier_hidden=(2048, 512),
    classifier_activation="leaky_relu",
    classifier_negative_slope=0.2,
    transformer_kind="official",
    transformer_hidden=512,  # unused by the official transformer (its layers are w_dim x w_dim)
    transformer_negative_slope=0.2,  # unused: the official map has no activation
    loss_kind="official",
    class_weight=1.0,
    attribute_weight=1.0,
    recon_weight=10.0,
    recon_form="mse",
    corr_threshold=1.0,
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=5e-4,
    batch_size=32,
    epochs=10,
    classifier_lr=1e-4,
    classifier_weight_decay=5e-4,
    classifier_batch_size=256,
    classifier_epochs=20,
    classifier_decay_epochs=10,
    classifier_lr_decay=0.1,
    train_fraction=0.9,
    edit_alpha_range=(-1.5, 1.5),
    table_alpha=1.25,
    edit_layers=(0, 11),
)

PRESETS: dict[str, MethodPreset] = {"paper": PAPER, "official": OFFICIAL}
"""The named presets. Paper choices where the paper is silent (documented in `MethodPreset`):
classifier hidden sizes (512, 256) with ReLU, H = Dense(512) -> LeakyReLU(0.2) -> Dense(512),
the classifier schedule of the official code, attribute loss on probabilities, `E||.||` as the
batch mean of the absolute difference (attribute loss), the recon loss as the mean squared error
over the latent's elements (`recon_form="mse"`; "norm" is the literal unsquared Euclidean norm)."""


def get_preset(name: str) -> MethodPreset:
    """The preset called `name`; one-line ConfigError listing the names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown method preset {name!r}; known: {', '.join(PRESETS)}") from None
