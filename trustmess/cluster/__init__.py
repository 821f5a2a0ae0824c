"""Across nodes: the Redis broker, the per-conversation sequencer, the --workers supervisor."""
