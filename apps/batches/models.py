"""batches: filled by a later issue."""
