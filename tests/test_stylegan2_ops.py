"""StyleGAN2 building blocks against independent NumPy definitions, and the module-level properties
(any architecture, jit/vmap, precision modes, truncation/mixing, random initialisation).

The end-to-end oracle is the golden fixtures (test_stylegan2_fixtures.py); here each operation is
checked on its own against a direct, loop-based NumPy reading of its definition.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.errors import ConfigError, InputError
from jaxedit.stylegan2 import (
    GeneratorConfig,
    MappingNetwork,
    mix_styles,
    ops,
    random_generator,
    truncate,
)

FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


def np_conv2d_same(x, w):
    """x [H, W, I], w [k, k, I, O] -> [H, W, O], zero padding k//2, cross-correlation (loops)."""
    k = w.shape[0]
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    out = np.zeros(x.shape[:2] + (w.shape[-1],))
    for dy in range(k):
        for dx in range(k):
            out += xp[dy : dy + x.shape[0], dx : dx + x.shape[1]] @ w[dy, dx]
    return out


def np_transposed_conv_stride2(x, w):
    """torch conv_transpose2d(x, W.transpose(0, 1), stride=2) in HWIO: each input pixel scatters
    x[y, x] @ w[dy, dx] to output (2y + dy, 2x + dx). [H, W, I] -> [2H+1, 2W+1, O]."""
    h, wd, _ = x.shape
    k = w.shape[0]
    out = np.zeros((2 * (h - 1) + k, 2 * (wd - 1) + k, w.shape[-1]))
    for y in range(h):
        for xx in range(wd):
            for dy in range(k):
                for dx in range(k):
                    out[2 * y + dy, 2 * xx + dx] += x[y, xx] @ w[dy, dx]
    return out


def np_fir(x, f, pad):
    """[H, W, C] zero-padded by `pad` on both axes, correlated with the 2-D filter f (valid)."""
    xp = np.pad(x, (pad, pad, (0, 0)))
    k = f.shape[0]
    out = np.zeros((xp.shape[0] - k + 1, xp.shape[1] - k + 1, x.shape[2]))
    for dy in range(k):
        for dx in range(k):
            out += f[dy, dx] * xp[dy : dy + out.shape[0], dx : dx + out.shape[1]]
    return out


def test_upsample2d_matches_zero_insertion_pad_2_1_and_fir_gain_4():
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 3)).astype(np.float32)
    got = np.asarray(ops.upsample2d(jnp.asarray(x)))
    for b in range(2):
        up = np.zeros((10, 12, 3))
        up[::2, ::2] = x[b]
        expected = np_fir(up, FIR * 4, (2, 1))
        np.testing.assert_allclose(got[b], expected, atol=1e-5)


def test_up_conv_is_the_transposed_conv_then_blur():
    """The lhs-dilated conv with the flipped kernel == torch's stride-2 transposed conv (no flip of
    the stored weights); forgetting the flip would fail here."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    s = np.ones((1, 3), np.float32)
    got = np.asarray(ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), up=True))
    expected = np_fir(np_transposed_conv_stride2(x[0], w), FIR * 4, (1, 1))
    assert got.shape == (1, 8, 10, 2)
    np.testing.assert_allclose(got[0], expected, atol=1e-4)


@pytest.mark.parametrize("up", [False, True])
def test_fast_modulated_conv_equals_per_sample_weights(up):
    """conv(x * s, W) * d == conv(x, demod(W * s)) per sample: checked against NumPy loops and the
    vmapped naive formulation used as the benchmark baseline."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    s = (1 + 0.5 * rng.standard_normal((3, 5))).astype(np.float32)
    fast = ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), up=up)
    fast = np.asarray(fast * ops.demodulation(jnp.asarray(w), jnp.asarray(s))[:, None, None, :])
    naive = np.asarray(ops.naive_modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), up=up))
    for b in range(3):
        wb = w * s[b][None, None, :, None]
        wb = wb / np.sqrt(np.sum(wb**2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        ref = np_fir(np_transposed_conv_stride2(x[b], wb), FIR * 4, (1, 1)) if up else np_conv2d_same(x[b], wb)
        np.testing.assert_allclose(fast[b], ref, atol=1e-4)
        np.testing.assert_allclose(naive[b], ref, atol=1e-4)


def test_epilogue_order_noise_bias_lrelu_gain_clamp():
    y = jnp.asarray([[[[1.0, -2.0]]]])
    out = ops.conv_epilogue(
        y,
        jnp.asarray([[2.0, 1.0]]),
        jnp.asarray([[[[0.5]]]]),
        jnp.asarray(0.4),
        jnp.asarray([0.1, 0.0]),
        conv_clamp=1.0,
        out_dtype=jnp.float32,
    )
    # channel 0: 1*2 + 0.4*0.5 + 0.1 = 2.3 -> *sqrt2 = 3.25 -> clip 1; channel 1: -2 + 0.2 = -1.8 -> *0.2*sqrt2
    np.testing.assert_allclose(np.asarray(out).ravel(), [1.0, -1.8 * 0.2 * np.sqrt(2)], rtol=1e-6)


def test_truncation_cutoff_and_mixing():
    rng = np.random.default_rng(3)
    ws = jnp.asarray(rng.standard_normal((2, 6, 4)), jnp.float32)
    ws2 = jnp.asarray(rng.standard_normal((2, 6, 4)), jnp.float32)
    w_avg = jnp.asarray(rng.standard_normal(4), jnp.float32)
    cut = np.asarray(truncate(ws, w_avg, 0.5, cutoff=2))
    np.testing.assert_allclose(cut[:, :2], np.asarray(w_avg + 0.5 * (ws[:, :2] - w_avg)), rtol=1e-6)
    np.testing.assert_array_equal(cut[:, 2:], np.asarray(ws[:, 2:]))
    np.testing.assert_allclose(
        np.asarray(truncate(ws, w_avg, 0.0)), np.broadcast_to(np.asarray(w_avg), ws.shape), atol=1e-6
    )
    mixed = np.asarray(mix_styles(ws, ws2, 4))
    np.testing.assert_array_equal(mixed[:, :4], np.asarray(ws[:, :4]))
    np.testing.assert_array_equal(mixed[:, 4:], np.asarray(ws2[:, 4:]))
    with pytest.raises(InputError, match="W\\+"):
        truncate(ws[:, 0], w_avg, 0.5, cutoff=2)


def test_mapping_init_is_equalized_lr():
    """Random params as stored (N(0,1)/lr, biases 0) give effective weights N(0, 1/fan_in)."""
    cfg = GeneratorConfig(resolution=8, z_dim=64, w_dim=128, mapping_layers=4, channels={4: 8, 8: 8})
    params = MappingNetwork(cfg).init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    assert set(params) == {"fc0", "fc1", "fc2", "fc3"}
    assert params["fc0"]["kernel"].shape == (64, 128) and params["fc1"]["kernel"].shape == (128, 128)
    effective = np.asarray(params["fc1"]["kernel"]) * cfg.lr_multiplier / np.sqrt(128)
    assert abs(effective.std() * np.sqrt(128) - 1) < 0.05
    assert np.all(np.asarray(params["fc0"]["bias"]) == 0)
    w = MappingNetwork(cfg).apply({"params": params}, jax.random.normal(jax.random.key(1), (256, 64)))
    assert w.shape == (256, 128) and 0.3 < float(jnp.sqrt(jnp.mean(w**2))) < 3.0


@pytest.fixture(scope="module")
def small_generator():
    """An unusual architecture: 32x32, z_dim != w_dim, 2 mapping layers, shrinking channels, clamp."""
    cfg = GeneratorConfig(
        resolution=32, z_dim=12, w_dim=20, mapping_layers=2, channels={4: 16, 8: 12, 16: 8, 32: 6}, conv_clamp=4.0
    )
    return random_generator(cfg, jax.random.key(0))


def test_any_architecture_renders(small_generator):
    g = small_generator
    # random params follow the modules' initialisers: mapping weights stored at 1/lr, affine biases 1
    assert 90 < float(jnp.std(g.params["mapping"]["fc1"]["kernel"])) < 110
    np.testing.assert_array_equal(np.asarray(g.params["synthesis"]["b8"]["conv0"]["affine"]["bias"]), 1.0)
    assert g.params["synthesis"]["b32"]["conv1"]["kernel"].shape == (3, 3, 6, 6)
    assert g.params["synthesis"]["b32"]["conv0"]["kernel"].shape == (3, 3, 8, 6)
    assert g.num_ws == 8 and g.config.num_noise_layers == 7
    ws = g.mapping(np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32), 0.8, 4)
    assert ws.shape == (3, 8, 20)
    images = np.asarray(g.synthesis(ws))
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32 and np.all(np.isfinite(images))


def test_vmap_through_the_api(small_generator):
    """The jitted entry points compose with vmap (an extra leading axis)."""
    g = small_generator
    z = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 12)), jnp.float32)
    ws = jax.vmap(lambda z: g.mapping(z, 0.7))(z)
    assert ws.shape == (2, 3, 8, 20)
    batched = jax.vmap(lambda w: g.synthesis(w, "none"))(ws)
    looped = jnp.stack([g.synthesis(ws[i], "none") for i in range(2)])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), atol=1e-5)


def test_precision_modes(small_generator):
    g = small_generator
    ws = g.mapping(np.random.default_rng(2).standard_normal((2, 12)).astype(np.float32))
    reference = np.asarray(g.synthesis(ws))
    for mode, tolerance in (("default", 5e-2), ("bfloat16", 1e-1)):
        out = g.with_precision(mode).synthesis(ws)
        assert out.dtype == jnp.float32
        rel = np.max(np.abs(np.asarray(out) - reference)) / np.max(np.abs(reference))
        assert rel < tolerance, (mode, rel)
    with pytest.raises(ConfigError, match="precision"):
        g.with_precision("fp8")


def test_noise_modes_and_explicit_noise(small_generator):
    g = small_generator
    ws = g.mapping(np.random.default_rng(3).standard_normal((2, 12)).astype(np.float32))
    # give the noise a visible strength (random init has noise_strength 0)
    params = jax.tree.map_with_path(
        lambda p, v: jnp.full_like(v, 0.5) if jax.tree_util.keystr(p).endswith("['noise_strength']") else v, g.params
    )
    g = dataclasses.replace(g, params=params)
    const = np.asarray(g.synthesis(ws, "const"))
    explicit = np.asarray(g.synthesis(ws, noise=[np.asarray(n) for n in g.noise_const]))
    np.testing.assert_allclose(explicit, const, atol=1e-5)  # explicit maps = the stored ones
    none = np.asarray(g.synthesis(ws, "none"))
    zeros = np.asarray(g.synthesis(ws, noise=[np.zeros(n.shape) for n in g.noise_const]))
    np.testing.assert_allclose(zeros, none, atol=1e-5)
    assert np.max(np.abs(const - none)) > 1e-2
    with pytest.raises(InputError, match="rng"):
        g.synthesis(ws, "random")
    with pytest.raises(InputError, match=r"noise\[1\]: expected \[8, 8\]"):
        g.synthesis(ws, noise=[np.zeros((4, 4))] * 7)
    with pytest.raises(InputError, match=r"ws: expected \[B, 8, 20\]"):
        g.synthesis(np.zeros((2, 7, 20)))


def test_config_validation_and_json_round_trip():
    cfg = GeneratorConfig()
    assert cfg.num_ws == 18 and cfg.channel(1024) == 32 and cfg.channel(64) == 512
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="power of two"):
        GeneratorConfig(resolution=100)
    with pytest.raises(ConfigError, match="channels"):
        GeneratorConfig(resolution=16, channels={4: 8, 8: 8})
    with pytest.raises(ConfigError, match="unknown keys"):
        GeneratorConfig.from_dict({**cfg.to_dict(), "style_dim": 3})
