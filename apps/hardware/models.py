"""hardware: filled by a later issue."""
