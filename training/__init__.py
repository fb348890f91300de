"""Training side of gpt2-pretrain, one subpackage per stage, in the order data flows through them:

    layout       the names writers and readers share: run-folder paths, checkpoint names, TensorBoard tags (a leaf)
    data/        corpus -> token shards (preparation), shard files, the training stream and validation set
    evaluation/  measuring a model: the validation loss, HellaSwag, samples, comparison with a reference
    loop/        arguments, the Accelerate trainer, optimizer and schedule, checkpoints, callbacks, diagnostics
    analysis/    reading a run back from its logs: the numbers, the report, the plots
    hub/         staging a complete model repo, uploading it, the push callback
    sweeps/      variants x seeds as ordinary runs, resumed and ranked by tokens to a target
    cli          command line + YAML presets -> a RunConfig (for the scripts; the loop never parses arguments)

A stage imports only the stages above it: the loop uses evaluation to validate during training, analysis reads
what the loop wrote only through ``layout``'s names, and the Hub callback is found by name and imports its
staging code only when it runs.
"""
