"""Host adapters: thin layers that turn a host's selection into a `voidlink.bridge.effect.RemoveEffect`.

Each adapter imports its host's module (`nuke`, ...) only when used, so this package imports anywhere.
"""
