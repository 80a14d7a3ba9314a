"""All I/O of the checkout: one module per thing a step touches. Every activity is idempotent:
run twice with the same input, it leaves one effect."""
