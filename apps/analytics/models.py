"""analytics: filled by a later issue."""
