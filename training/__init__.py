"""Training side of gpt2-pretrain: data, the Accelerate loop, callbacks, diagnostics, evaluation, analysis."""
