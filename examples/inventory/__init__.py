"""Inventory: stock per product, sales orders, a stock-level read model and a fulfilment saga.

Built only on the engine's public seams (``domain.decider.Decider``, ``views.ReadModel``,
``store.Codec`` upcasters, ``actors.Saga``); nothing in ``actors/``, ``store/`` or ``views/``
names it. Open an engine over it with::

    Engine.open(path, **inventory_engine_options())

which passes the two deciders, the read model, the codec (with the upcaster) and the saga.
"""
