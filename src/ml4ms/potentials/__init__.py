"""Neural-network interatomic potentials: model, committee, training, ASE calculator, model files, MD, label
checks, novelty."""

from .calculator import NeuralPotentialCalculator
from .checks import energy_force_consistency
from .committee import Committee
from .io import load_potential, save_potential
from .md import run_md
from .model import NeuralPotential
from .train import train_potential

__all__ = ["Committee", "NeuralPotential", "NeuralPotentialCalculator", "energy_force_consistency", "load_potential",
           "run_md", "save_potential", "train_potential"]
