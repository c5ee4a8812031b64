"""The protocol with a labeller and an identity embedder that are NOT the synthetic world's (a toy
latent space with known answers), the JSON/Markdown/PNG reports, and our method's adapter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.errors import AttributeNameError, InputError
from jaxedit.eval import identity, protocol, report

NAMES = ("Smiling", "Male", "Young")


def toy_labeller(x):
    """Attribute j is present when x_j > 0 (a latent -> probability labeller, not the synthetic world)."""
    return jax.nn.sigmoid(10.0 * jnp.asarray(x)[:, :3])


def toy_embedder(x):
    """Identity: the last three coordinates."""
    return jnp.asarray(x)[:, 3:]


def oracle_edit(x, attribute, strength):
    j = NAMES.index(attribute)
    x = jnp.asarray(x)
    return x.at[:, j].add(strength * (jnp.abs(x[:, j]) + 1.0))


def leaky_edit(x, attribute, strength):
    j = NAMES.index(attribute)
    x = oracle_edit(x, attribute, strength)
    x = x.at[:, (j + 1) % 3].multiply(-1.0)  # flips one of the two other attributes
    return x.at[:, 3:].multiply(-1.0)  # and destroys identity (cosine -1)


def idle_edit(x, attribute, strength):
    return jnp.asarray(x)


@pytest.fixture(scope="module")
def evaluation():
    latents = jax.random.normal(jax.random.key(0), (400, 6))
    threshold = identity.far_threshold(
        toy_embedder, jax.random.normal(jax.random.key(1), (2000, 6)), jax.random.key(2), num_pairs=20000
    )
    methods = [
        protocol.EditMethod("oracle", oracle_edit, 1.0),
        protocol.EditMethod("leaky", leaky_edit, 1.0),
        protocol.EditMethod("idle", idle_edit, 1.0),
    ]
    return protocol.evaluate(
        methods,
        toy_labeller,
        toy_embedder,
        latents,
        ["smiling", "Male", 2],
        threshold,
        labeller_attributes=NAMES,
        sweep=(0.0, 0.5, 1.0),
        batch_size=128,
    )


def test_known_answers_with_a_different_labeller(evaluation):
    for name in NAMES:
        assert evaluation.table[name]["oracle"] == {
            "accuracy": 1.0,
            "attribute_preservation": 1.0,
            "identity_preservation": 1.0,
            "identity_cosine_mean": pytest.approx(1.0),
            "identity_cosine_std": pytest.approx(0.0, abs=1e-7),
            "successes": 400,
        }
        leaky = evaluation.table[name]["leaky"]
        assert (
            leaky["accuracy"] == 1.0
            and leaky["attribute_preservation"] == 0.5
            and leaky["identity_preservation"] == 0.0
            and leaky["identity_cosine_mean"] == pytest.approx(-1.0)
        )
        assert evaluation.table[name]["idle"] == {
            "accuracy": 0.0,
            "attribute_preservation": 0.0,
            "identity_preservation": 0.0,
            "identity_cosine_mean": None,
            "identity_cosine_std": None,
            "successes": 0,
        }
    assert 0.5 < evaluation.threshold < 1.0  # 3-d identities: impostor cosines are spread widely


def test_sweeps_start_unedited_and_end_at_the_table(evaluation):
    curve = evaluation.sweeps["Male"]["oracle"]
    assert curve["fraction"] == [0.0, 0.5, 1.0]
    assert curve["target_probability"][0] < 0.3 and curve["target_probability"][-1] > 0.99
    assert curve["attribute_preservation"] == [1.0, 1.0, 1.0]
    assert evaluation.sweeps["Male"]["leaky"]["attribute_preservation"][-1] == 0.5


def test_json_markdown_and_plots(evaluation, tmp_path):
    result = report.report_dict(evaluation, {"note": "toy"})
    assert set(result) == {"attributes", "average", "settings"}
    assert set(result["attributes"]) == set(NAMES)
    for per_method in [*result["attributes"].values(), result["average"]]:
        for values in per_method.values():
            assert set(values) == {
                "accuracy",
                "attribute_preservation",
                "identity_preservation",
                "identity_cosine_mean",
                "identity_cosine_std",
            }
            assert all(0.0 <= values[k] <= 1.0 for k in report.METRICS)
    assert result["average"]["leaky"]["attribute_preservation"] == 0.5
    assert result["average"]["leaky"]["identity_cosine_mean"] == pytest.approx(-1.0)
    assert result["average"]["idle"]["identity_cosine_mean"] is None
    report.write_json(result, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == result
    table = report.markdown_table(result, ["Male", "Young"])
    assert (
        "| Male | 100.00 / 100.00 / 0.00 |" in table and "average (3 attributes)" in table and "Smiling |" not in table
    )
    assert "| 1.000 +- 0.000 / -1.000 +- 0.000 / - |" in table
    paths = report.write_plots(evaluation, tmp_path / "plots", attributes=["Male"])
    assert [p.name for p in paths] == [
        "target_probability.png",
        "attribute_preservation.png",
        "identity_preservation.png",
        "tradeoff_attribute_preservation.png",
        "tradeoff_identity_preservation.png",
        "tradeoff_identity_cosine.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_bad_labeller_and_unknown_attribute():
    latents = jnp.zeros((4, 6))
    method = protocol.EditMethod("idle", idle_edit, 1.0, attributes=("Male",))
    with pytest.raises(InputError, match="labeller returned shape"):
        protocol.evaluate(
            [method], lambda x: jnp.zeros((4, 2)), toy_embedder, latents, ["Male"], 0.5, labeller_attributes=NAMES
        )
    with pytest.raises(AttributeNameError):
        protocol.evaluate([method], toy_labeller, toy_embedder, latents, ["Bald"], 0.5, labeller_attributes=NAMES)
    with pytest.raises(AttributeNameError, match="cannot edit Young"):
        protocol.evaluate([method], toy_labeller, toy_embedder, latents, ["Young"], 0.5, labeller_attributes=NAMES)


def test_transformer_method_applies_the_attribute_transformer():
    from jaxedit.latent.editors import editors_from_params
    from jaxedit.latent.modules import (
        classifier_from_preset,
        init_classifier_params,
        init_transformer_params,
        transformer_from_preset,
    )
    from jaxedit.latent.presets import get_preset
    from jaxedit.training.steps import stack_slots

    preset = get_preset("paper").replace(w_dim=8, transformer_hidden=8, classifier_hidden=(8,))
    c_params = init_classifier_params(classifier_from_preset(preset), jax.random.key(0))
    t_module = transformer_from_preset(preset)
    t_params = stack_slots([init_transformer_params(t_module, jax.random.key(i)) for i in range(2)])
    editors = editors_from_params(preset, c_params, t_params, ["Male", "Young"])
    method = protocol.transformer_method(editors, alpha=1.25)
    latents = jax.random.normal(jax.random.key(3), (5, 8))
    strength = jnp.array([1.25, -1.25, 1.25, 0.0, -1.25])
    expected = editors.transform(latents, "Young", strength)
    np.testing.assert_allclose(np.asarray(method.edit(latents, "Young", strength)), np.asarray(expected), atol=1e-6)
    assert method.strength == 1.25 and method.attributes == ("Male", "Young")


def test_matched_accuracy_interpolates_the_baseline_sweep():
    from jaxedit.eval.protocol import Evaluation

    curve = {
        "fraction": [0.0, 0.5, 1.0],
        "strength": [0.0, 1.5, 3.0],
        "target_probability": [0.1, 0.5, 0.9],
        "attribute_preservation": [1.0, 0.9, 0.8],
        "identity_preservation": [1.0, 1.0, 1.0],
        "accuracy": [0.0, 0.4, 0.8],
        "attribute_preservation_successful": [0.0, 0.9, 0.7],
        "identity_preservation_successful": [0.0, 1.0, 0.5],
        "identity_cosine_successful": [float("nan"), 0.9, 0.7],
    }
    never = dict(curve, accuracy=[0.0, 0.1, 0.2])
    ours = {"accuracy": 0.6, "attribute_preservation": 0.95, "identity_preservation": 1.0, "successes": 6}
    evaluation = Evaluation(
        {"Male": {"ours": ours, "ifg": {}, "weak": {}}},
        {"Male": {"ours": curve, "ifg": curve, "weak": never}},
        0.5,
        10,
        ("ours", "ifg", "weak"),
    )
    matched = report.matched_accuracy(evaluation)
    ifg = matched["attributes"]["Male"]["ifg"]
    assert ifg["fraction"] == pytest.approx(0.75) and ifg["accuracy"] == pytest.approx(0.6)
    assert ifg["attribute_preservation"] == pytest.approx(0.8) and ifg["identity_preservation"] == pytest.approx(0.75)
    assert ifg["identity_cosine_mean"] == pytest.approx(0.8)
    assert matched["attributes"]["Male"]["weak"] is None and set(matched["average"]) == {"ifg"}
    assert (
        matched["average"]["ifg"]["attributes"] == 1
        and matched["average"]["ifg"]["ours_attribute_preservation"] == 0.95
    )
    assert "| ifg | 1 | 80.00 / 95.00 | 75.00 / 100.00 |" in report.matched_markdown(matched)
    # below the first success: preservation from the first point that flipped anything
    low = dict(ours, accuracy=0.2)
    evaluation = Evaluation(
        {"Male": {"ours": low, "ifg": {}}}, {"Male": {"ours": curve, "ifg": curve}}, 0.5, 10, ("ours", "ifg")
    )
    ifg = report.matched_accuracy(evaluation)["attributes"]["Male"]["ifg"]
    assert ifg["fraction"] == pytest.approx(0.25) and ifg["attribute_preservation"] == pytest.approx(0.9)


def test_summary_quotes_the_paper_beside_the_run_and_says_what_each_line_measures(evaluation):
    result = report.report_dict(evaluation, {"latents_per_attribute": 400})
    ours = dict(evaluation.table["Male"]["leaky"], accuracy=0.5)
    curve = evaluation.sweeps["Male"]["oracle"]
    matched = report.matched_accuracy(
        protocol.Evaluation(
            {"Male": {"leaky": ours, "oracle": {}}}, {"Male": {"oracle": curve}}, 0.5, 400, ("leaky", "oracle")
        ),
        reference="leaky",
    )
    text = report.summary_text(result, matched, settings="Settings: toy")
    assert text.startswith("Settings: toy\n\n1. The paper's four attributes")
    # the paper's Table 1 for Gender, quoted beside this run's Male row (accuracy: ours 90.90, InterFaceGAN 98.60)
    assert (
        "| Male (paper: Gender) | accuracy: share of edits whose target label flipped | 90.90 | 98.60 | 100.00 |"
        in text
    )
    assert "identity cosine: mean +- std over flipped edits (not in the paper) | - | - | 1.000 +- 0.000 |" in text
    assert "2. Average over all 3 evaluated attributes" in text and "3. At matched accuracy" in text
    assert "| oracle | 1 of 1 |" in text


def test_an_evaluation_that_cannot_fit_in_memory_is_refused_up_front():
    from jaxedit.errors import ConfigError
    from jaxedit.eval.suite import SuiteSettings, check_memory, memory_needed

    settings = SuiteSettings(count=1000, baseline_samples=1000, identity_samples=1000, identity_pairs=1000)
    # float32 latents [18, 512]: 2 x 1000 evaluated + 3 x 1000 fitting + 1000 identity, labels, impostor pairs
    assert memory_needed(settings, (18, 512)) == 4 * (9216 * 6000 + 80 * 1000) + 16 * 128 * 1000
    check_memory(settings, (18, 512), available=2**30)
    with pytest.raises(ConfigError, match=r"count 100000 .* needs about 7.0 GiB, more than the 1.0 GiB"):
        check_memory(
            SuiteSettings(count=100_000, baseline_samples=1000, identity_samples=1000, identity_pairs=1000),
            (18, 512),
            available=2**30,
        )


def test_a_method_sweeps_its_own_fractions():
    """A baseline sweeps further than ours (`BASELINE_SWEEP`), so matched accuracy can reach ours."""
    latents = jax.random.normal(jax.random.key(0), (50, 6))
    methods = [
        protocol.EditMethod("oracle", oracle_edit, 1.0),
        protocol.EditMethod("far", oracle_edit, 1.0, sweep=(0.0, 2.0, 4.0)),
    ]
    result = protocol.evaluate(
        methods, toy_labeller, toy_embedder, latents, ["Male"], 0.5, labeller_attributes=NAMES, sweep=(0.0, 0.5)
    )
    assert result.sweeps["Male"]["oracle"]["fraction"] == [0.0, 0.5, 1.0]
    assert result.sweeps["Male"]["far"]["fraction"] == [0.0, 1.0, 2.0, 4.0]
    assert protocol.BASELINE_SWEEP[-1] == 4.0 and set(protocol.DEFAULT_SWEEP) < set(protocol.BASELINE_SWEEP)
