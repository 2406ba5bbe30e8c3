"""Files that hold codes and models: code stores, shards, checkpoints, saved indexes, locking, encoding."""
