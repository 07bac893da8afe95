"""Command-line commands, one module each; ``cortex.__main__`` dispatches to them."""
