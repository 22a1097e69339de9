"""Training: losses (pure tensor maths), batching, and glue to sentence-transformers."""
