"""Pure Python (no Django): parsing results, length distributions, token-exact text, request plans."""
