"""Photos to training pairs: COLMAP reconstruction (through pycolmap) and pair mining. The pairs
file they write is read and written by ``hashkit.hashing.files.pairs_file``, which needs no pycolmap."""
