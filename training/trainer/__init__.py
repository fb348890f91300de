"""The training loop: typed arguments (``arguments``), construction (``builders``), the Accelerate ``Trainer``
(``trainer``), AdamW and the schedule (``optimization``), checkpoint folders (``checkpointing``), the callback
contract and flow (``callbacks``) and the training-dynamics callbacks (``diagnostics``)."""
