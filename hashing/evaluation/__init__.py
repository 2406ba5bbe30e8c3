"""From codes to answers: metrics, query runs, reports, comparisons."""
