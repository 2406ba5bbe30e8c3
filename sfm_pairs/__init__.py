"""Photos to training pairs: COLMAP reconstruction (through pycolmap) and pair mining.

``hashkit.sfm_pairs.reconstruct`` runs COLMAP; reading and writing ``pairs.h5`` (exported
here) needs no pycolmap.
"""

from .pairs_file import Pairs, read_pairs, write_pairs

__all__ = ["Pairs", "read_pairs", "write_pairs"]
