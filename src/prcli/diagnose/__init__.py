"""`pr diagnose`: which failures are perception errors (the paper's error analysis, automated).

Each response is checked against reference visual facts: a fact is `consistent` with it, `contradicted`
by it (the response misreads the figure) or `absent` from it; the item's `error_type` follows from
those verdicts and whether its answer was correct.
"""
