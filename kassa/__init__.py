"""Kassa's core: money, statuses and their transitions, ids, errors, settings, and what the
API, the workflows and the activities say to each other. It imports nothing of Kassa's other
layers (tests/test_layers.py enforces it), so every layer, the workflow sandbox included,
can import it."""
