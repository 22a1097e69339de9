"""geckokit: distil a compact text-embedding model from an unlabelled corpus and an LLM.

Implements the recipe of "Gecko: Versatile Text Embeddings Distilled from Large Language
Models" (Lee et al., 2024). Importing the package is cheap: heavy dependencies (torch,
llama.cpp, ray, fastapi) are imported only by the parts that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geckokit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
