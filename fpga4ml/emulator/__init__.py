"""The emulator: the integer semantics of every op (ops.py) and the batch engine (engine.py)."""
