"""Code stores: the HDF5 store, encoding images with a model, shards and merging."""
