"""Method folders: each sub-package registers its classes and its `MethodEntry` when imported."""
