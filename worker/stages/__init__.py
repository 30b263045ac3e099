"""The worker's pipeline stages, one module each, in the order an event meets them.

fetch (with address_policy) -> decode_processes -> prepare -> batch -> score -> store -> output.
The worker loop (`worker.app`) wires them; replay reuses the same stages.
"""
