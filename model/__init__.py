"""Everything about the expression network: its inputs, data, definition, training aids and export.

Modules that the run-time path imports (``preprocess``, ``images``, ``card``, ``metrics``) never
import TensorFlow; only ``network``, ``augment`` and ``export`` do, and only training loads them.
"""
