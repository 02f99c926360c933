"""Default list prices (USD per 1M tokens, input / output) of well-known hosted models.

As published by the vendors in mid-2025 (PRICES_AS_OF); prices change, so an endpoint's own
price fields always win and are editable. Used to fill in an endpoint's prices when left empty.
"""

PRICES_AS_OF = "2025-06"
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-1.5-flash": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
}


def default_price(model: str) -> tuple[float, float] | None:
    """The list price of `model`, matching dated names by prefix (claude-sonnet-4-20250514)."""
    name = model.lower()
    best = max((k for k in DEFAULT_PRICES if name.startswith(k)), key=len, default=None)
    return DEFAULT_PRICES[best] if best else None
