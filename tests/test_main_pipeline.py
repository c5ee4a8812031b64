"""`python -m train` end to end on a tiny synthetic world, then `jaxedit eval` on its editors."""

import json

import numpy as np
import pytest

from jaxedit.attributes import ATTRIBUTES

TINY = [
    "--w-dim",
    "32",
    "--z-dim",
    "32",
    "--mapping-layers",
    "2",
    "--samples",
    "3000",
    "--transformer-samples",
    "640",
    "--epochs",
    "1",
    "--classifier-epochs",
    "2",
    "--eval-count",
    "100",
    "--identity-samples",
    "400",
    "--identity-pairs",
    "20000",
    "--no-progress",
    "--set",
    "batch_size=32",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from jaxedit.cli.train import pipeline_main

    out = tmp_path_factory.mktemp("run") / "paper"
    return out, pipeline_main


def test_default_preset_pipeline_prints_the_table_and_writes_everything(run, capsys):
    out, pipeline_main = run
    assert pipeline_main(["--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    # the settings first (recon_form and weights printed), then the paper's four attributes beside
    # its quoted Table 1, the 40-attribute average, the matched-accuracy comparison
    assert printed.startswith("Settings: W [32], preset paper: loss = 1 x class + 1 x attribute + 100 x recon")
    assert "(recon_form mse: mean squared error over the latent's elements)" in printed
    assert "Changed from the paper preset: batch_size 32 (preset: 16); epochs 1 (preset: 10);" in printed
    for row in ("| Young (paper: Age) | accuracy", "| Eyeglasses | accuracy", "| Male (paper: Gender) | accuracy"):
        assert row in printed
    assert "| Smiling | accuracy: share of edits whose target label flipped | 100.00 | 100.00 |" in printed
    blocks = ["1. The paper's four attributes", "2. Average over all 40 evaluated attributes", "3. At matched accuracy"]
    assert [printed.index(b) for b in blocks] == sorted(printed.index(b) for b in blocks)
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"attributes", "average", "settings"}
    assert list(report["attributes"]) == list(ATTRIBUTES)
    for per_method in [*report["attributes"].values(), report["average"]]:
        assert set(per_method) == {"ours", "interfacegan", "interfacegan_cond", "ganspace"}
        for values in per_method.values():
            assert set(values) == {
                "accuracy",
                "attribute_preservation",
                "identity_preservation",
                "identity_cosine_mean",
                "identity_cosine_std",
            }
            assert all(0.0 <= values[k] <= 1.0 for k in ("accuracy", "attribute_preservation", "identity_preservation"))
    assert report["settings"]["method"]["name"] == "paper" and report["settings"]["method"]["space"] == "w"
    assert "SYNTHETIC" in report["settings"]["labeller"] and "SYNTHETIC" in (out / "report.md").read_text()
    for plot in (
        "target_probability",
        "attribute_preservation",
        "identity_preservation",
        "tradeoff_attribute_preservation",
        "tradeoff_identity_preservation",
        "tradeoff_identity_cosine",
    ):
        assert (out / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    from jaxedit.latent.editors import load_editors

    editors = load_editors(out / "editors")
    assert editors.attributes == ATTRIBUTES and editors.latent_shape == (32,)
    # the average row is the mean of the 40 attribute rows
    mean = np.mean([report["attributes"][a]["interfacegan"]["accuracy"] for a in ATTRIBUTES])
    assert report["average"]["interfacegan"]["accuracy"] == pytest.approx(mean)


def test_jaxedit_eval_rebuilds_the_world_from_the_editors(run, capsys):
    out, _ = run
    from jaxedit.cli.main import main

    code = main(
        [
            "eval",
            str(out / "editors"),
            "--out",
            str(out / "eval"),
            "--attributes",
            "Smiling,Male",
            "--count",
            "80",
            "--baseline-samples",
            "2000",
            "--identity-samples",
            "300",
            "--identity-pairs",
            "5000",
            "--baselines",
            "interfacegan",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Male (paper: Gender) | accuracy" in printed and "Average over all 2 evaluated attributes" in printed
    report = json.loads((out / "eval" / "report.json").read_text())
    assert list(report["attributes"]) == ["Smiling", "Male"]
    # a count whose arrays cannot fit in memory is refused before any work, in one line
    assert main(["eval", str(out / "editors"), "--out", str(out / "eval-huge"), "--count", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert "count 1000000000000" in err and "GiB of memory available" in err and len(err.strip().splitlines()) == 1
    assert not (out / "eval-huge").exists()
    assert set(report["average"]) == {"ours", "interfacegan"}


def test_official_preset_on_w_plus(tmp_path):
    from jaxedit.cli.train import pipeline_main

    out = tmp_path / "official"
    flags = [*TINY, "--set", "classifier_hidden=64,32"]
    assert (
        pipeline_main(
            [
                "--preset",
                "official",
                "--num-ws",
                "4",
                "--attributes",
                "Young,Male,Smiling,Eyeglasses,No_Beard",
                "--out",
                str(out),
                *flags,
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["method"]["space"] == "w+" and report["settings"]["method"]["num_ws"] == 4
    assert list(report["attributes"]) == ["Young", "Male", "Smiling", "Eyeglasses", "No_Beard"]


def test_bad_flags_fail_in_one_line(tmp_path, capsys):
    from jaxedit.cli.train import pipeline_main

    assert pipeline_main(["--out", str(tmp_path / "x"), "--attributes", "Smilling", *TINY]) == 2
    err = capsys.readouterr().err
    assert "Smiling" in err and len(err.strip().splitlines()) == 1
    assert pipeline_main(["--out", str(tmp_path / "y"), "--set", "no_such_field=1", *TINY]) == 2
    assert "argument --set: 'no_such_field=1'" in capsys.readouterr().err
    assert pipeline_main(["--out", str(tmp_path / "z"), "--transformer-samples", "5000", "--samples", "4000"]) == 2
    err = capsys.readouterr().err
    assert "pipeline settings: transformer_samples 5000 exceeds samples 4000" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
