"""Starting the run's trackers: TensorBoard in the run folder (always: the analysis reads it) and the others of
``--report_to`` through Accelerate; then what a run states once: the custom-scalars layout, the hyperparameters,
config.yaml and its text, and the facts of the run at step 0."""

from ..layout import TENSORBOARD_PROJECT, TRACKER, Tags


def start_tracking(trainer) -> None:
    """Open the trackers of ``trainer``'s run (after a resume, make TensorBoard drop what an earlier writer logged
    after the checkpoint: the tail of a crashed run, or an abandoned branch) and write the run's opening records."""
    accelerator, config, layout, log = trainer.accelerator, trainer.config, trainer.layout, trainer.log
    run_name = config.logging.run_name or trainer.output_dir.name
    init_kwargs = {TRACKER: {"purge_step": trainer.resumed_step + 1}} if trainer.resumed_step is not None else {}
    if "wandb" in config.logging.report_to:
        init_kwargs["wandb"] = {"name": run_name}
    accelerator.init_trackers(TENSORBOARD_PROJECT, init_kwargs=init_kwargs)  # events in the run folder
    if accelerator.is_main_process:  # each block's own run, with the same purge after a resume
        log.block_runs.open(layout, trainer.resumed_step + 1 if trainer.resumed_step is not None else None)
    log.log_layout()
    log.log_hparams(config.flat())
    for tracker in accelerator.trackers:  # the other trackers of --report_to get the settings as their config
        if tracker.name != TRACKER and accelerator.is_main_process:
            tracker.store_init_configuration(config.flat())
    if not accelerator.is_main_process:
        return
    trainer.effective_config().save(layout.config_file)
    log.log_text(Tags.CONFIG_TEXT, f"run `{run_name}`\n\n```yaml\n{layout.config_file.read_text()}```", 0)
    log.log_scalars({Tags.RUN_GRAD_ACCUM_STEPS: trainer.grad_accum, Tags.RUN_TOKENS_PER_STEP: trainer.tokens_per_step,
                     Tags.RUN_NUM_PROCESSES: accelerator.num_processes, Tags.RUN_GRAD_CLIP: config.optimizer.grad_clip,
                     Tags.RUN_PARAMETERS: trainer.num_parameters,
                     Tags.RUN_VOCAB_SIZE: trainer.raw_model.config.vocab_size}, step=0)
