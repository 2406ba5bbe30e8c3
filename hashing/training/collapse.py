"""How far the codes of a set of images have collapsed onto shared codes.

Codes of different images may coincide for near-duplicates, but many images of different groups
(3D models' linked images, classes) on one code means the codes no longer tell them apart: a
query then ties with all of them. ``hashkit train`` reports this on its training images, the
real-photo benchmark on every method's database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# warn when more than this fraction of the grouped images share a code with an image of another group
CROSS_GROUP_WARNING = 0.05


@dataclass(frozen=True)
class Collapse:
    images: int
    distinct_codes: int
    largest_bucket: int  # images on the most shared code
    cross_group_pairs: int  # pairs of images of different groups (both grouped) on one code
    images_sharing_across_groups: int  # grouped images that share their code with another group's image
    grouped_images: int  # images with a group (>= 0); 0 when no groups were given

    def warning(self) -> str | None:
        """One line when the codes have collapsed, else None."""
        if self.grouped_images:
            if self.images_sharing_across_groups <= CROSS_GROUP_WARNING * self.grouped_images:
                return None
            return (f"codes collapse: {self.images_sharing_across_groups} of {self.grouped_images} grouped images "
                    f"share a code with an image of another group ({self.cross_group_pairs} such pairs; "
                    f"{self.distinct_codes} distinct codes for {self.images} images)")
        if self.distinct_codes >= self.images / 2:
            return None
        return f"codes collapse: {self.distinct_codes} distinct codes for {self.images} images " \
               f"(largest shared by {self.largest_bucket})"


def code_collapse(codes: np.ndarray, groups: np.ndarray | None = None) -> Collapse:
    """The collapse of ``codes`` (N, bytes), packed binary codes; ``groups`` (N,) int, -1 for an
    image of no group (neither counted nor counted against)."""
    _, bucket, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    bucket = bucket.reshape(-1)
    cross_pairs, sharing, grouped = 0, 0, 0
    if groups is not None:
        groups = np.asarray(groups)
        keep = groups >= 0
        grouped = int(keep.sum())
        # per (bucket, group): how many images; a bucket's cross pairs = all pairs - same-group pairs
        bucket_group = np.stack([bucket[keep], groups[keep]], axis=1)
        pairs_of, counts = np.unique(bucket_group, axis=0, return_counts=True)
        per_bucket = np.bincount(pairs_of[:, 0], weights=counts, minlength=len(sizes))
        same = np.bincount(pairs_of[:, 0], weights=counts * (counts - 1) / 2, minlength=len(sizes))
        cross_pairs = int(round(float((per_bucket * (per_bucket - 1) / 2 - same).sum())))
        # an image shares across groups when its bucket holds grouped images beyond its own group's
        own = dict(zip(map(tuple, pairs_of.tolist()), counts.tolist()))
        sharing = sum(1 for b, g in bucket_group.tolist() if per_bucket[b] > own[(b, g)])
    return Collapse(len(codes), len(sizes), int(sizes.max()) if len(sizes) else 0, cross_pairs, sharing, grouped)
