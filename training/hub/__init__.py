"""The Hub: assemble a complete model repo with its card (``staging``), upload it (``upload``), and push during
training (``callback``, found by name as ``push_to_hub``)."""
