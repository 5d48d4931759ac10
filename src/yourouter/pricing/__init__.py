"""Pricing: list prices by model, a config's overrides, and the exact USD cost of a usage."""

from yourouter.pricing.book import PriceBook, lookup_names, price_of
from yourouter.pricing.price import Price
from yourouter.pricing.table import PRICES

__all__ = ["PRICES", "Price", "PriceBook", "lookup_names", "price_of"]
