"""Task functions: one per job kind, each read like a diffusers ``__call__`` (documented
arguments, checks first, one loop, callbacks). ``engine.run`` dispatches to them."""
