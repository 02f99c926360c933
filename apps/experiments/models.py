"""experiments: filled by a later issue."""
