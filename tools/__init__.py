"""Measuring and demonstration tools (bench, demo, CPU usage, device checks, sample images).

Nothing in `worker/` or `model/` imports from here: tools drive the product, they are not part of it.
"""
