"""The ground floor: file safety (locks, atomic outputs, disk space) and the formats every step
shares (images, labels, pairs files, text columns)."""
