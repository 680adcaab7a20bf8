"""Example domains built only on the engine's public API (not part of the library's wheel).

Each one is a package a newcomer can read top to bottom: :mod:`examples.inventory` is a stock
aggregate, a small sales-order aggregate, a stock-level read model, a v1 -> v2 upcaster and the
saga that joins the two aggregate types.
"""
