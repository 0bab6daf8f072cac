"""Training, evaluation and card of the tiny reference method, on effhub's shared training loop."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TinyModelRecipe:
    """Model size of the tiny classifier."""

    hidden_size: int = 32


@dataclass
class TinyDataRecipe:
    """Generated blob data: sample counts and pixel noise."""

    train_samples: int = 1024
    test_samples: int = 256
    noise: float = 0.15
    image_size: int = 16


@dataclass
class TinyTrainRecipe:
    """Optimisation of the single training phase."""

    steps: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.0


@dataclass
class TinyRecipe:
    """A recipe of the tiny method (`effhub/recipes/tiny/<name>.yaml`)."""

    description: str = ""
    seed: int = 0
    model: TinyModelRecipe = field(default_factory=TinyModelRecipe)
    data: TinyDataRecipe = field(default_factory=TinyDataRecipe)
    train: TinyTrainRecipe = field(default_factory=TinyTrainRecipe)
