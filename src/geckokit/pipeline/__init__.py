"""Running stages: sharded, resumable local loops (and, later, Ray Data)."""
