"""Matte trackers and affected-region proposers, and how the daemon chooses one.

`classical` needs nothing beyond the base install (flow and the camera's motion, on any machine);
`sam2` and `edgetam` need transformers and their weights, downloaded by the user like VOID's.
"""
