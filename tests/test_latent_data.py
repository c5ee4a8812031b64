"""Latent datasets: the official .npy pair and our .npz, label codings, validation, split, batching."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.attributes import ATTRIBUTES
from jaxedit.data.latents import (
    epoch_indices,
    load_latent_dataset,
    make_dataset,
    save_latent_dataset,
    split_dataset,
    steps_per_epoch,
)
from jaxedit.errors import AttributeNameError, InputError


def _arrays(n=20, shape=(3, 8), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), (rng.random((n, 40)) > 0.5).astype(np.int64)


def test_official_npy_pair_with_minus_one_labels(tmp_path):
    latents, labels = _arrays()
    np.save(tmp_path / "celebahq_dlatents_psp.npy", latents)
    np.save(tmp_path / "celebahq_anno.npy", 2 * labels - 1)
    data = load_latent_dataset(
        tmp_path / "celebahq_dlatents_psp.npy", tmp_path / "celebahq_anno.npy", latent_shape=(3, 8), num_attributes=40
    )
    np.testing.assert_array_equal(data.latents, latents)
    np.testing.assert_array_equal(data.labels, labels.astype(np.float32))
    assert data.labels.dtype == np.float32 and len(data) == 20 and data.latent_shape == (3, 8)
    assert any("-1/1, mapped to 0/1" in note for note in data.notes)
    # 0/1 labels need no note
    np.save(tmp_path / "anno01.npy", labels)
    assert load_latent_dataset(tmp_path / "celebahq_dlatents_psp.npy", tmp_path / "anno01.npy").notes == ()


def test_our_npz_round_trip_and_column_names(tmp_path):
    latents, labels = _arrays(shape=(8,))
    data = make_dataset(latents, labels, names=ATTRIBUTES)
    path = save_latent_dataset(tmp_path / "data.npz", data)
    loaded = load_latent_dataset(path)
    np.testing.assert_array_equal(loaded.latents, latents)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.names == ATTRIBUTES
    # columns named in another order are put back in CelebA order
    order = np.random.default_rng(1).permutation(40)
    shuffled = make_dataset(latents, labels[:, order], names=[ATTRIBUTES[i].lower() for i in order])
    np.testing.assert_array_equal(shuffled.labels, labels)
    assert shuffled.names == ATTRIBUTES and any("reordered" in note for note in shuffled.notes)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda x, y: (x, y[:-1]), InputError, "20 latents but 19 label rows"),
        (lambda x, y: (x, y * 2), InputError, "labels must be 0/1 or -1/1, found values 0, 2"),
        (lambda x, y: (np.where(np.arange(20)[:, None, None] == 3, np.nan, x), y), InputError, "NaN or infinite"),
        (lambda x, y: (x.reshape(20, 24), y), InputError, r"latents of shape \[20, 24\], expected \[N, 3, 8\]"),
        (lambda x, y: (x, y[:, :39]), InputError, r"labels of shape \[20, 39\], expected \[N, 40\]"),
        (lambda x, y: (x.astype(np.int32), y), InputError, "expected floating point"),
    ],
)
def test_bad_arrays_fail_in_one_line(change, error, message):
    latents, labels = change(*_arrays())
    with pytest.raises(error, match=message):
        make_dataset(latents, labels, source="x.npz", latent_shape=(3, 8), num_attributes=40)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_latent_dataset(tmp_path / "missing.npy", tmp_path / "labels.npy")
    np.savez(tmp_path / "wrong.npz", w=np.zeros((2, 8), np.float32))
    with pytest.raises(InputError, match="no array 'latents' \\(holds w\\)"):
        load_latent_dataset(tmp_path / "wrong.npz")
    np.save(tmp_path / "only.npy", np.zeros((2, 8), np.float32))
    with pytest.raises(InputError, match="no labels"):
        load_latent_dataset(tmp_path / "only.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable .npy/.npz file"):
        load_latent_dataset(tmp_path / "junk.npy", tmp_path / "junk.npy")
    latents, labels = _arrays(shape=(8,))
    with pytest.raises(AttributeNameError, match="unknown attribute 'Smiley'"):
        make_dataset(latents, labels[:, :2], names=["Smiley", "Young"])


def test_split_is_first_ninety_percent():
    latents, labels = _arrays(n=30)
    train, heldout = split_dataset(make_dataset(latents, labels), 0.9)
    assert len(train) == 27 and len(heldout) == 3
    np.testing.assert_array_equal(train.latents, latents[:27])
    np.testing.assert_array_equal(heldout.latents, latents[27:])


def test_epoch_indices_are_seeded_permutations_of_full_batches():
    assert steps_per_epoch(27000, 32) == 843
    first = np.asarray(epoch_indices(0, 0, 100, 32))
    assert first.shape == (3, 32) and first.dtype == np.int32
    assert len(np.unique(first)) == 96 and first.min() >= 0 and first.max() < 100
    np.testing.assert_array_equal(first, np.asarray(epoch_indices(0, 0, 100, 32)))  # same seed and epoch
    assert not np.array_equal(first, np.asarray(epoch_indices(0, 1, 100, 32)))  # next epoch reshuffles
    assert not np.array_equal(first, np.asarray(epoch_indices(1, 0, 100, 32)))  # another seed
    latents = jnp.arange(100.0)[:, None] * jnp.ones((1, 4))
    batches = latents[jnp.asarray(first)]
    assert batches.shape == (3, 32, 4)
    np.testing.assert_array_equal(np.asarray(batches[:, :, 0]), first.astype(np.float32))
    with pytest.raises(InputError, match="no full batch"):
        epoch_indices(0, 0, 10, 32)
