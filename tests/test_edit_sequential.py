"""`jaxedit.eval.sequential`: sequential-edit measurements on a hand-made world whose answers are
known exactly (labels are signs of coordinates; edits set coordinates)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.attributes import ATTRIBUTES
from jaxedit.errors import InputError
from jaxedit.eval.protocol import EditMethod
from jaxedit.eval.sequential import format_sequential_report, sequential_edit_report

N = 8
SEQUENCE = ["5_o_Clock_Shadow", "arched_eyebrows", 2, "Bags_Under_Eyes"]  # attributes 0..3


def _labeller(latents):
    return 1.0 / (1.0 + jnp.exp(-20.0 * latents))  # attribute j present iff x_j > 0


def _embedder(latents):
    return latents[:, 4:]  # identity: the 36 coordinates that are not targets


def _set_target(latents, name, strength):
    j = ATTRIBUTES.index(name)
    return latents.at[:, j].set(0.5 * jnp.sign(strength))


def _leaky(latents, name, strength):
    """The exact edit, plus side effects: editing attribute 2 also flips attribute 39, and editing
    attribute 3 negates coordinate 0 again (undoing the first edit)."""
    out = _set_target(latents, name, strength)
    if name == ATTRIBUTES[2]:
        out = out.at[:, 39].set(-out[:, 39])
    if name == ATTRIBUTES[3]:
        out = out.at[:, 0].set(-out[:, 0])
    return out


def _weak(latents, name, strength):
    """Succeeds only on latents whose coordinate 39 is positive."""
    edited = _set_target(latents, name, strength)
    return jnp.where(latents[:, 39:40] > 0, edited, latents)


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    latents = (rng.choice([-1.0, 1.0], size=(N, 40)) * 0.5).astype(np.float32)
    latents[:, 39] = np.where(np.arange(N) < 3, 0.5, -0.5)  # 3 of 8 latents have x_39 > 0
    methods = [EditMethod("exact", _set_target, 1.25), EditMethod("leaky", _leaky, 3.0), EditMethod("weak", _weak, 1.0)]
    return sequential_edit_report(methods, _labeller, _embedder, latents, SEQUENCE, threshold=0.99, batch_size=3)


def test_exact_edits_flip_every_target_and_keep_everything_else(report):
    assert report["sequence"] == list(ATTRIBUTES[:4]) and report["count"] == N
    final = report["methods"]["exact"]["final"]
    assert final["all_targets_flipped"] == 1.0 and final["targets_flipped"] == 1.0
    assert final["others_kept"] == 1.0 and final["others_kept_successful"] == 1.0
    assert final["identity_kept"] == 1.0 and final["per_target_flipped"] == {a: 1.0 for a in ATTRIBUTES[:4]}
    steps = report["methods"]["exact"]["steps"]
    assert steps[0]["earlier_targets_kept"] is None and all(step["earlier_targets_kept"] == 1.0 for step in steps[1:])


def test_side_effects_and_undone_edits_are_counted(report):
    steps = report["methods"]["leaky"]["steps"]
    assert [s["others_kept"] for s in steps] == [1.0, 1.0, pytest.approx(35 / 36), pytest.approx(35 / 36)]
    assert [s["identity_kept"] for s in steps] == [1.0, 1.0, 0.0, 0.0]  # cosine 34/36 < 0.99
    assert steps[3]["earlier_targets_kept"] == pytest.approx(2 / 3)  # attribute 0 was undone, 1 and 2 kept
    final = report["methods"]["leaky"]["final"]
    assert final["all_targets_flipped"] == 0.0 and final["targets_flipped"] == pytest.approx(3 / 4)
    assert final["per_target_flipped"][ATTRIBUTES[0]] == 0.0


def test_partial_success_is_measured_per_latent(report):
    steps = report["methods"]["weak"]["steps"]
    assert [s["target_flipped"] for s in steps] == [pytest.approx(3 / 8)] * 4
    assert all(s["earlier_targets_kept"] == 1.0 for s in steps[1:])  # conditional on having been reversed
    final = report["methods"]["weak"]["final"]
    assert final["all_targets_flipped"] == pytest.approx(3 / 8)
    assert final["others_kept"] == 1.0 and final["identity_kept"] == 1.0
    assert final["latent_distance"] > 0
    text = format_sequential_report(report)
    assert "| weak | 37.50 | 37.50 |" in text and "4. Bags_Under_Eyes" in text


def test_bad_sequences():
    latents = np.zeros((2, 40), np.float32)
    method = EditMethod("exact", _set_target, 1.0)
    with pytest.raises(InputError, match="distinct"):
        sequential_edit_report([method], _labeller, _embedder, latents, ["Smiling", "smiling"], 0.5)
    with pytest.raises(InputError, match=r"\[N, ...\]"):
        sequential_edit_report([method], _labeller, _embedder, np.zeros((40,), np.float32), ["Smiling"], 0.5)


def _additive(latents, name, strength):
    """x_j += 0.5 * strength: reverses the attribute (|x_j| = 0.5) only when |strength| > 1."""
    j = ATTRIBUTES.index(name)
    return latents.at[:, j].add(0.5 * strength)


def test_strength_curve_and_matched_comparison():
    from jaxedit.eval.sequential import at_matched_reversal, strength_curve

    latents = (np.random.default_rng(1).choice([-1.0, 1.0], size=(6, 40)) * 0.5).astype(np.float32)
    curve = strength_curve(
        [EditMethod("add", _additive, 1.0)], _labeller, _embedder, latents, SEQUENCE, 0.99, fractions=(1.5, 0.5)
    )
    points = curve["add"]
    assert [p["fraction"] for p in points] == [0.5, 1.5] and [p["strength"] for p in points] == [0.5, 1.5]
    assert [p["targets_flipped"] for p in points] == [0.0, 1.0]
    made_up = [
        {"targets_flipped": 0.2, "others_kept": 0.9, "identity_kept": 1.0, "strength": 1.0, "all_targets_flipped": 0.0},
        {"targets_flipped": 0.6, "others_kept": 0.7, "identity_kept": 0.5, "strength": 3.0, "all_targets_flipped": 0.4},
    ]
    matched = at_matched_reversal(made_up, 0.5)
    assert matched["others_kept"] == pytest.approx(0.75) and matched["strength"] == pytest.approx(2.5)
    assert matched["identity_kept"] == pytest.approx(0.625) and matched["targets_flipped"] == 0.5
    assert at_matched_reversal(made_up, 0.9) is None
