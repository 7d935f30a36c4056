"""The two-stage Super-Sub pipeline: a generalist routes each image to a specialist, and
the specialists are the generalist's own weights with their deltas applied in place."""
