"""Adapter method folders (PEFT tuners): each sub-package registers itself when imported."""
