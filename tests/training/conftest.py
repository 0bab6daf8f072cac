import gc

import pytest


@pytest.fixture(scope="session", autouse=True)
def _freeze_imported_objects():
    """Every run ends with a full garbage collection (`Run.close`); moving the objects created by the imports
    (torch, transformers, ...) out of the collector's reach keeps each collection short in tests."""
    import accelerate  # noqa: F401
    import torch  # noqa: F401

    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each test builds its own Accelerator with its own settings (a test
    running several `Run`s resets them in between with `_training_fixtures.reset_accelerate_state`)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
