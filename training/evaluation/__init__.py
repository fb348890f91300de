"""Evaluation: validation loss (``validation``), HellaSwag (``hellaswag``), text samples (``sampling``), loading any
GPT-2-family checkpoint (``checkpoints``) and side-by-side comparison with a reference (``comparison``)."""
