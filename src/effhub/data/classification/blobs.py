"""Generated colour-blob images for classification: the smallest demo's data set.

Each image shows one blob on a noisy background; the class is the blob's shape (square or disc) crossed with its
colour family (warm or cold), so a classifier must look at both. Deterministic by seed, returned as a
`datasets.Dataset` of `pixel_values` (float32, 3 x size x size, in [0, 1]) and `label`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOB_CLASSES = ("warm square", "warm disc", "cold square", "cold disc")


@dataclass(frozen=True)
class BlobsConfig:
    """Parameters of the blob generator (frozen: recipes record them).

    Args:
        size (`int`): image side in pixels.
        noise (`float`): std of the Gaussian pixel noise.
        min_radius, max_radius (`int`): blob half-size range in pixels.
    """

    size: int = 16
    noise: float = 0.15
    min_radius: int = 3
    max_radius: int = 6


def generate_blobs(num_samples: int, seed: int, config: BlobsConfig = BlobsConfig()) -> dict[str, np.ndarray]:
    """Generate `num_samples` blob images and labels as numpy arrays (vectorised; deterministic by `seed`)."""
    rng = np.random.default_rng(seed)
    size = config.size
    labels = rng.integers(0, len(BLOB_CLASSES), num_samples)
    is_disc = labels % 2 == 1
    is_cold = labels >= 2
    radius = rng.integers(config.min_radius, config.max_radius + 1, num_samples)[:, None, None]
    centre_y = rng.integers(config.max_radius, size - config.max_radius, num_samples)[:, None, None]
    centre_x = rng.integers(config.max_radius, size - config.max_radius, num_samples)[:, None, None]
    grid_y, grid_x = np.mgrid[0:size, 0:size]
    offset_y, offset_x = grid_y[None] - centre_y, grid_x[None] - centre_x
    disc = offset_y**2 + offset_x**2 <= radius**2
    square = (np.abs(offset_y) <= radius) & (np.abs(offset_x) <= radius)
    mask = np.where(is_disc[:, None, None], disc, square)
    # warm colours are red-dominant, cold ones blue-dominant; the exact hue varies so colour alone is a family
    warm = np.stack([rng.uniform(0.7, 1.0, num_samples), rng.uniform(0.1, 0.6, num_samples),
                     rng.uniform(0.0, 0.3, num_samples)], axis=1)
    cold = warm[:, ::-1]
    colour = np.where(is_cold[:, None], cold, warm)
    background = rng.uniform(0.3, 0.6, (num_samples, 1, 1, 1))
    images = np.broadcast_to(background, (num_samples, 3, size, size)).copy()
    images = np.where(mask[:, None], colour[:, :, None, None], images)
    images += rng.normal(0.0, config.noise, images.shape)
    return {"pixel_values": np.clip(images, 0.0, 1.0).astype(np.float32), "label": labels.astype(np.int64)}


def build_blobs_dataset(num_samples: int, seed: int, config: BlobsConfig = BlobsConfig()):
    """The blob images as a `datasets.Dataset` with an `id` column, formatted for torch."""
    import datasets

    arrays = generate_blobs(num_samples, seed, config)
    features = datasets.Features(
        {
            "id": datasets.Value("int64"),
            "pixel_values": datasets.Array3D(shape=(3, config.size, config.size), dtype="float32"),
            "label": datasets.ClassLabel(names=list(BLOB_CLASSES)),
        }
    )
    dataset = datasets.Dataset.from_dict(
        {"id": np.arange(num_samples), "pixel_values": arrays["pixel_values"], "label": arrays["label"]},
        features=features,
    )
    return dataset.with_format("torch")


__all__ = ["BLOB_CLASSES", "BlobsConfig", "generate_blobs", "build_blobs_dataset"]
