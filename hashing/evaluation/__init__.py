"""From codes to answers: Hamming search, ground truth, metrics, query runs, reports, comparisons."""
