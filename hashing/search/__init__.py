"""Hamming search: the index interface and registry, the streamed scan, multi-index hashing, FAISS
indexes, saved indexes."""
