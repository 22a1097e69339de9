"""Studies that measure what the recipe gives, one folder each with its README and scripts."""
