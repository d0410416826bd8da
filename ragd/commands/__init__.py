"""CLI command groups, one module per component; ``ragd.cli`` registers them."""
