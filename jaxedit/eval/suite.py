"""The whole Table 1 evaluation of trained editors against the baselines, written to a directory.

`run_suite(editors, labeller, embedder, sampler, ...)`:

1. samples `baseline_samples` latents with `sampler`, labels them with `labeller` and fits the
   baselines on them: InterFaceGAN (SVM normals), its conditional variant (each normal projected
   orthogonal to the normals of its `conditions` most correlated attributes) and GANSpace;
2. estimates the identity threshold at 0.1% false acceptance from `identity_pairs` random pairs
   of `identity_samples` fresh latents;
3. runs the protocol (`jaxedit.eval.protocol.evaluate`) on `count` fresh latents: ours at alpha
   `alpha`, the baselines at distance `distance`, all signed to reverse the attribute;
4. writes `report.json`, `report.md` and `plots/*.png` to `out` and returns the report dict.

The labeller, the embedder and the sampler are arguments: the synthetic world's stand-ins
(`jaxedit.data.synthetic.labeller/identity_embedder/sample_latents`) or a generator composed with
real image models (`protocol.image_labeller/image_embedder`) go through the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxedit.attributes import ATTRIBUTES
from jaxedit.config import check_types
from jaxedit.errors import AttributeNameError, ConfigError
from jaxedit.eval import baselines, identity, protocol, report
from jaxedit.io import atomic_write_text

TABLE_ATTRIBUTES = ("Young", "Eyeglasses", "Male", "Smiling")
"""The paper's four attributes (Age, Eyeglasses, Gender, Smiling)."""

BASELINES = ("interfacegan", "interfacegan_cond", "ganspace")


@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """count: latents per attribute (the paper: 1000); alpha: our strength (None: the editors'
    preset `table_alpha`); distance: InterFaceGAN's and GANSpace's; baseline_samples: labelled
    latents the baselines are fitted on; identity_samples/pairs: for the 0.1%-FAR threshold; far:
    the false-acceptance rate; conditions: how many most-correlated attributes the conditional
    InterFaceGAN normal is made orthogonal to; baselines: which to run; seed: all sampling keys
    derive from it."""

    count: int = 1000
    alpha: float | None = None
    distance: float = 3.0
    baseline_samples: int = 20_000
    identity_samples: int = 4000
    identity_pairs: int = 200_000
    far: float = 1e-3
    conditions: int = 2
    baselines: tuple[str, ...] = BASELINES
    seed: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("count", "baseline_samples", "identity_samples", "identity_pairs"):
            if getattr(self, name) < 2:
                raise ConfigError(f"evaluation settings: {name} must be at least 2, got {getattr(self, name)}")
        for name in ("alpha", "distance"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"evaluation settings: {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.far < 1:
            raise ConfigError(f"evaluation settings: far must be in (0, 1), got {self.far}")
        if self.conditions < 0:
            raise ConfigError(f"evaluation settings: conditions must be >= 0, got {self.conditions}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ConfigError(
                f"evaluation settings: unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINES)}"
            )
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"evaluation settings: seed must be in 0..2**63-1, got {self.seed}")


def memory_needed(settings: SuiteSettings, latent_shape: Sequence[int], identity_dim: int = 128) -> int:
    """Rough peak bytes of `run_suite` for latents of `latent_shape`: the evaluation latents and one
    edited copy plus labels (float32), the baselines' fitting sample (three float32 copies: the
    latents, centred, scaled), the identity sample, and the impostor pairs (two float64 [pairs, D])."""
    size = math.prod(int(s) for s in latent_shape)
    floats = size * (2 * settings.count + 3 * settings.baseline_samples + settings.identity_samples)
    floats += 2 * 40 * settings.count
    return 4 * floats + 2 * 8 * identity_dim * settings.identity_pairs


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(settings: SuiteSettings, latent_shape: Sequence[int], available: int | None = None) -> None:
    """One-line ConfigError, before any work, when `memory_needed` exceeds the memory available
    (`available` bytes; default `available_memory()`, the check is skipped when that is unknown)."""
    available = available_memory() if available is None else available
    needed = memory_needed(settings, latent_shape)
    if available is not None and needed > available:
        raise ConfigError(
            f"evaluation settings: count {settings.count} (with baseline_samples {settings.baseline_samples}, "
            f"identity_pairs {settings.identity_pairs}) on latents {list(latent_shape)} needs about "
            f"{needed / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB of memory available"
        )


def run_suite(
    editors,
    labeller: protocol.Labeller,
    embedder: protocol.Embedder,
    sampler: Callable[[jax.Array, int], jax.Array],
    out: str | Path,
    settings: SuiteSettings = SuiteSettings(),
    attributes: Sequence[str] | None = None,
    extra_settings: dict | None = None,
    title: str = "",
    baseline_latents=None,
    baseline_probabilities=None,
    log: Callable[[str], None] = lambda message: None,
    progress: bool = False,
) -> tuple[dict, str]:
    """Evaluate `editors` and the baselines (module docstring); returns (report dict, the printed
    summary: `jaxedit.eval.report.summary_text`).

    sampler(key, n) -> latents [n, *editors.latent_shape]. attributes: names to evaluate (default:
    every attribute the editors cover). baseline_latents / baseline_probabilities: an already
    labelled sample to fit the baselines on (default: drawn with `sampler` and `labeller`).
    log: receives one line per stage. progress: a bar over the evaluated attributes on stderr
    when it is a terminal (`evaluation_progress`; otherwise the stage lines only).
    """
    from jaxedit.latent.losses import correlation_matrix

    check_memory(settings, editors.latent_shape)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(attributes) if attributes is not None else list(editors.attributes)
    unknown = [n for n in names if n not in editors.attributes]
    if unknown:
        raise AttributeNameError(f"the editors cover no transformer for {', '.join(unknown)}")
    if settings.alpha is None:
        settings = dataclasses.replace(settings, alpha=editors.preset.table_alpha)
    key = jax.random.fold_in(jax.random.key(settings.seed), 23)
    key_fit, key_svm, key_identity, key_pairs, key_eval = jax.random.split(key, 5)
    timings = {}

    tick = time.perf_counter()
    methods = [protocol.transformer_method(editors, settings.alpha)]
    fit_info = {}
    if settings.baselines:
        log(f"fitting the baselines ({', '.join(settings.baselines)})")
        if baseline_latents is None:
            baseline_latents = np.asarray(sampler(key_fit, settings.baseline_samples))
            baseline_probabilities = protocol.apply_batched(labeller, baseline_latents, 4096)
        probabilities = np.asarray(baseline_probabilities)
        boundaries = baselines.fit_interfacegan(baseline_latents, probabilities, key_svm)
        fit_info["interfacegan_val_accuracy"] = {
            a: float(boundaries.val_accuracy[ATTRIBUTES.index(a)]) for a in names if a in ATTRIBUTES
        }
        if "interfacegan" in settings.baselines:
            methods.append(protocol.interfacegan_method(boundaries, ATTRIBUTES, settings.distance))
        if "interfacegan_cond" in settings.baselines:
            correlation = np.asarray(correlation_matrix((probabilities > 0.5).astype(np.float32)))
            conditions = baselines.most_correlated(correlation, settings.conditions)
            normals = baselines.conditional_normals(boundaries.normals, conditions)
            fit_info["interfacegan_cond_conditions"] = {
                a: [ATTRIBUTES[c] for c in conditions[ATTRIBUTES.index(a)]] for a in names
            }
            methods.append(
                protocol.interfacegan_method(
                    boundaries, ATTRIBUTES, settings.distance, name="interfacegan_cond", normals=normals
                )
            )
        if "ganspace" in settings.baselines:
            components = baselines.fit_ganspace(baseline_latents, num_components=20)
            choice = baselines.choose_components(components, baseline_latents, probabilities)
            fit_info["ganspace_component"] = {a: int(choice[0][ATTRIBUTES.index(a)]) for a in names}
            methods.append(protocol.ganspace_method(components, choice, ATTRIBUTES, settings.distance))
    timings["baselines"] = time.perf_counter() - tick

    tick = time.perf_counter()
    threshold = identity.far_threshold(
        embedder,
        sampler(key_identity, settings.identity_samples),
        key_pairs,
        num_pairs=settings.identity_pairs,
        far=settings.far,
    )
    eval_latents = sampler(key_eval, settings.count)
    log(
        f"identity threshold at {settings.far:g} FAR: {threshold:.4f}; evaluating {len(methods)} methods on {len(names)} attributes"
    )
    with evaluation_progress(len(names), progress) as advance:
        evaluation = protocol.evaluate(methods, labeller, embedder, eval_latents, names, threshold, progress=advance)
    timings["evaluation"] = time.perf_counter() - tick

    shown = [a for a in TABLE_ATTRIBUTES if a in names] or names[:4]
    settings_dict = {
        **dict(extra_settings or {}),
        "evaluation": {**dataclasses.asdict(settings), "baselines": list(settings.baselines)},
        "editors": {
            "preset": editors.preset.name,
            "latent_shape": list(editors.latent_shape),
            "attributes": list(editors.attributes),
        },
        "methods": {
            "ours": f"latent transformer T(w, alpha), alpha = +-{settings.alpha} signed to reverse the attribute",
            "interfacegan": f"w + t n, linear SVM normal (top/bottom 2% by labeller probability, 70/30), t = +-{settings.distance}",
            "interfacegan_cond": f"the same with the normal projected orthogonal to the normals of the {settings.conditions} most correlated attributes",
            "ganspace": f"the PCA component (of 20) most correlated with the attribute, +-{settings.distance} on every layer",
        },
        **fit_info,
        "successes": {n: {m: per[m]["successes"] for m in per} for n, per in evaluation.table.items()},
        "evaluation_seconds": timings,
    }
    matched = report.matched_accuracy(evaluation, "ours")
    settings_dict["matched_accuracy"] = matched
    result = report.report_dict(evaluation, settings_dict)
    report.write_json(result, out / "report.json")
    training = getattr(editors, "training", None) or {}
    summary = report.summary_text(
        result,
        matched,
        shown,
        settings=report.settings_text(
            editors.preset, settings.alpha, settings.distance, settings.count, training.get("transformer_samples")
        ),
    )
    full = report.markdown_table(result, None, title="All attributes")
    atomic_write_text(
        out / "report.md",
        f"# jaxedit evaluation ({editors.preset.name} preset)\n\n{title}\n\n{summary}\n\n"
        f"Identity threshold (0.1% false acceptance on {settings.identity_pairs} random pairs): {threshold:.4f}.\n\n"
        f"## At matched accuracy, per attribute\n\n{report.matched_markdown(matched, None)}\n\n{full}\n",
    )
    report.write_plots(evaluation, out / "plots", attributes=shown)
    return result, summary


@contextlib.contextmanager
def evaluation_progress(total: int, enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A callback advancing a tqdm bar of `total` attributes on stderr, or None when not `enabled`.
    The bar shows only when stderr is a terminal (tqdm `disable=None`), so a log file gets no
    refreshes, only the suite's one line per stage."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="evaluating", unit="attribute", dynamic_ncols=True, file=sys.stderr, disable=None)
    try:
        yield lambda name: (bar.set_postfix_str(name, refresh=False), bar.update(1))
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------------
# Where the labeller, embedder and sampler come from (used by `jaxedit eval`)


def import_callable(spec: str) -> Callable:
    """The callable named by "package.module:attribute" (one-line ConfigError otherwise)."""
    import importlib

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{spec!r}: expected MODULE:CALLABLE, e.g. mypackage.models:celeba_classifier")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{spec!r}: cannot import {module_name!r} ({error})") from None
    target = getattr(module, attribute, None)
    if not callable(target):
        raise ConfigError(f"{spec!r}: {module_name} has no callable {attribute!r}")
    return target


def synthetic_world_for(editors, seed: int | None = None, generator=None):
    """The synthetic world the editors were trained in (from their training info), or a default one.

    With `generator`, the world's latents come from its mapping network. `seed` overrides the
    recorded world seed.
    """
    from jaxedit.data import synthetic

    recorded = dict(editors.training.get("world_config") or {}) if hasattr(editors, "training") else {}
    known = {f.name for f in dataclasses.fields(synthetic.WorldConfig)}
    values = {k: v for k, v in recorded.items() if k in known}
    if seed is not None:
        values["seed"] = int(seed)
    shape = tuple(editors.latent_shape)
    if generator is not None:
        world = synthetic.world_from_generator(generator, synthetic.WorldConfig(**{**values, "subspace_dim": 0}))
    else:
        values.setdefault("w_dim", shape[-1])
        values.setdefault("z_dim", shape[-1])
        if len(shape) == 2:
            values["num_ws"] = shape[0]
        world = synthetic.build_world(synthetic.WorldConfig(**values))
    if world.w_dim != shape[-1]:
        raise ConfigError(f"the editors work on w_dim {shape[-1]} but the world's latents have w_dim {world.w_dim}")
    return world
