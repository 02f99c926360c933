"""providers: filled by a later issue."""
