"""Distribution: the TFF worker's lifetime, its remote executor, rounds over several workers."""
