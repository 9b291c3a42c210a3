"""ml4ms: machine learning for materials science.

Structures (``ase.Atoms``) -> descriptor -> learning -> prediction with
uncertainty -> insight. Heavy optional imports (torch, matplotlib) are kept
out of ``import ml4ms``.
"""

__version__ = "0.1.0"

from .errors import InputError, ModelFileError

__all__ = ["__version__", "InputError", "ModelFileError"]
