"""Command-line interface: one module per command, thin handlers over the library."""
