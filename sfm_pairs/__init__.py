"""Photos to training pairs: COLMAP reconstruction (through pycolmap) and pair mining."""

from .pairs_file import Pairs, read_pairs, write_pairs
from .reconstruct import ReconstructOptions, reconstruct

__all__ = ["Pairs", "ReconstructOptions", "read_pairs", "reconstruct", "write_pairs"]
