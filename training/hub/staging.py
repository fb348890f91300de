"""Publishing to the Hugging Face Hub: a complete, loadable model repo with an honest model card.

``stage_upload`` assembles the folder (weights, config with auto_map, modeling code, generation config,
tokenizer files, the resolved run configuration, TensorBoard logs, analysis plots, a plain ``GPT2LMHeadModel``
export, and the card); ``upload.push_folder`` uploads it with ``HfApi``. Every number in the card comes from the
run's own files (``training_state.json``, ``run_config.yaml``, an ``evaluate_checkpoints.py`` JSON).
"""

import json
import shutil
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config_fields import flatten
from ..layout import (
    EVENT_FILE_PREFIX,
    RUN_CONFIG_FILE,
    TRAINING_STATE_FILE,
    WRITTEN_FILE,
    RunLayout,
    run_of_model_folder,
)
from ..ownership import (
    foreign_in_analysis,
    record_written,
    recorded_names,
    refuse_dangerous,
    refuse_foreign,
    remove_path,
    written_by_this_project,
)
from .upload import HubError

MODEL_FILES = ("model.safetensors", "config.json", "generation_config.json", "modeling_gpt.py",
               "configuration_gpt.py", "loss.py", TRAINING_STATE_FILE, RUN_CONFIG_FILE)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
GPT2_EXPORT_DIR = "gpt2-export"


def run_dir_of(checkpoint: Path) -> Path | None:
    """``runs/x/final`` -> ``runs/x``; ``runs/x/checkpoints/step_N/model`` -> ``runs/x``."""
    found = run_of_model_folder(Path(checkpoint).resolve())
    if found is None or not found[0].looks_like_run():
        return None
    return found[0].root


# ----------------------------------------------------------------------------------------------- the card
def _read(path: Path, loader):
    return loader(path.read_text()) if path.exists() else {}


def eval_row(evaluation: dict) -> tuple[dict | None, dict | None]:
    """This model's row and the reference's row of an ``evaluate_checkpoints.py`` JSON."""
    models = evaluation.get("models", [])
    reference = evaluation.get("reference")
    ours = next((m for m in models if reference is None or m["path"] != reference["path"]), None)
    return ours, reference


def build_model_card(folder: Path, repo_id: str, evaluation: dict | None = None) -> ModelCard:
    state = _read(folder / TRAINING_STATE_FILE, json.loads)
    run = _read(folder / RUN_CONFIG_FILE, yaml.safe_load)
    config = json.loads((folder / "config.json").read_text())
    ours, reference = eval_row(evaluation or {})
    train = flatten(run)
    hub_dataset, data_name = dataset_of(run)
    eval_results = []
    if ours:
        eval_results.append(EvalResult(task_type="text-generation", dataset_type=hub_dataset or "local",
                                       dataset_name=f"{data_name} validation shard", metric_type="loss",
                                       metric_name="validation loss", metric_value=round(ours["val_loss"], 4)))
        if ours.get("hellaswag_acc_norm") is not None:
            eval_results.append(EvalResult(task_type="multiple-choice", dataset_type="Rowan/hellaswag",
                                           dataset_name="HellaSwag", dataset_split="validation",
                                           metric_type="acc_norm", metric_name="acc_norm (completion style)",
                                           metric_value=round(ours["hellaswag_acc_norm"], 4)))
    card_data = ModelCardData(language="en", license="mit", library_name="transformers",
                              pipeline_tag="text-generation", tags=["gpt2", "pretraining", "nanogpt", "accelerate"],
                              datasets=[hub_dataset] if hub_dataset else None, model_name=repo_id.split("/")[-1],
                              eval_results=eval_results or None)
    body = _card_body(repo_id, config, state, train, data_name, ours, reference, folder)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _num(value, pattern="{:,}"):
    return "unknown" if value is None else pattern.format(value)


def _data_name(data: dict) -> str:
    """The training data by name only: a local path would leak the training machine's folders into the card."""
    source = data.get("data") or data.get("download_url")
    if not source:
        return "unknown"
    return source.rstrip("/").rsplit("/", 1)[-1] if "://" in source else Path(source).name or "unknown"


def dataset_of(run: dict) -> tuple[str | None, str]:
    """(the Hub dataset the shards were made from, or None for a local corpus; a name for the card), from the
    data's meta.json where it can be found; never a local path, never a guess."""
    data = train = flatten(run)
    candidates = [Path(data["data"])] if data.get("data") else []
    if train.get("output_dir"):
        candidates.append(RunLayout(train["output_dir"]).prepared_shards_dir)
    for folder in candidates:
        meta = folder / "meta.json"
        if folder.is_dir() and meta.is_file():
            source = json.loads(meta.read_text()).get("source", {})
            if source.get("dataset"):
                config = f" ({source['config']})" if source.get("config") else ""
                return source["dataset"], f"{source['dataset']}{config}"
            files = [Path(f).name for f in source.get("files", [])]
            return None, f"local corpus {', '.join(files[:3]) or _data_name(data)}"
    return None, _data_name(data)


def _which_folder(config: dict, folder: Path) -> list[str]:
    """How to load what was staged: the root with remote code, and the plain GPT-2 export only when it is there."""
    lines = ["## Which folder to use", "",
             "- The repository root: this project's model class, loaded with remote code:",
             "  `AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True)` (vocabulary padded to "
             f"{config['vocab_size']})."]
    if (folder / GPT2_EXPORT_DIR).is_dir():
        lines += [f"- `{GPT2_EXPORT_DIR}/`: the same weights as a plain `GPT2LMHeadModel` (vocabulary 50257), for use "
                  "with no remote code at all: `GPT2LMHeadModel.from_pretrained(repo, subfolder=\"gpt2-export\")`.", "",
                  "Both folders hold a GPT-2 tokenizer (identical ids to tiktoken's `gpt2`), so "
                  "`pipeline(\"text-generation\", model=repo, trust_remote_code=True)` works.", ""]
    else:
        not_gpt2 = config.get("qk_norm") or config.get("bias") is False or config.get("parametrization") == "mup"
        why = ("its architecture (qk_norm, μP, or no biases) is not GPT-2's, so there is no plain GPT2LMHeadModel "
               "export" if not_gpt2 else "no plain GPT2LMHeadModel export was staged")
        lines += [f"- Only the root: {why}.", "",
                  "The root holds a GPT-2 tokenizer (identical ids to tiktoken's `gpt2`), so "
                  "`pipeline(\"text-generation\", model=repo, trust_remote_code=True)` works.", ""]
    return lines


def _curves(folder: Path) -> list[str]:
    """The training-curve section, naming only the plots and logs that were staged."""
    lines = []
    if (folder / "plots" / "lossGraph.png").is_file():
        lines += ["![loss](plots/lossGraph.png)", ""]
    if (folder / "runs").is_dir():
        lines += ["TensorBoard logs are in `runs/` (the Hub renders them under *Training metrics*).", ""]
    return ["## Training curves", "", *lines] if lines else []


def _optimizer_rows(config: dict, train: dict) -> list[str]:
    """The card's rows for Muon and μP, which change what the learning-rate row means for the hidden matrices."""
    rows = []
    if train.get("optimizer") == "muon":
        rows.append(f"| Muon (hidden matrices) | lr {train.get('muon_lr') or train.get('max_lr')}, momentum "
                    f"{train.get('muon_momentum')}, update RMS matched to AdamW's |")
    if config.get("parametrization") == "mup" and config.get("mup_base_width"):
        m = config["n_embd"] / config["mup_base_width"]
        scale = "1/sqrt(m) (Muon)" if train.get("optimizer") == "muon" else "1/m, weight decay x m"
        rows.append(f"| parametrization | μP relative to base width {config['mup_base_width']} (m = {m:g}): hidden "
                    f"matrices at the learning rate above x {scale}; logits x 1/m (docs/mup.md) |")
    return rows


def _card_body(repo_id, config, state, train, data_name, ours, reference, folder: Path) -> str:
    params = state.get("parameters")
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"A GPT-2-architecture language model ({config['n_layer']} layers, {config['n_head']} heads, width "
             f"{config['n_embd']}, context {config['n_positions']}, vocabulary {config['vocab_size']}; "
             f"{_num(params)} parameters) pretrained from scratch with "
             "gpt2-pretrain (transformers + accelerate).", "",
             *_which_folder(config, folder),
             "## Training", "",
             "| | |", "| --- | --- |",
             f"| data | {data_name} |",
             f"| steps | {_num(state.get('global_step'))} |",
             f"| tokens trained | {_num(state.get('tokens_seen'))} |",
             f"| tokens per step | {_num(state.get('tokens_per_step'))} |",
             f"| learning rate | {train.get('max_lr')} -> {train.get('min_lr')} "
             f"{train.get('lr_schedule') or 'cosine'}, {train.get('warmup_steps')} warmup steps |",
             f"| AdamW | betas ({train.get('adam_beta1')}, {train.get('adam_beta2')}), eps {train.get('adam_epsilon')},"
             f" weight decay {train.get('weight_decay')} |",
             *_optimizer_rows(config, train),
             f"| gradient clipping | {train.get('grad_clip')} |",
             f"| micro-batch x sequence length | {train.get('micro_batch_size')} x {train.get('seq_len')} |",
             f"| hardware | {_num(state.get('num_processes'), '{}')} x {state.get('device', 'unknown')}, "
             f"mixed precision {state.get('mixed_precision', 'unknown')} |",
             f"| final validation loss (training log) | {_num(state.get('last_val_loss'), '{:.4f}')} |", ""]
    if ours:
        lines += ["## Evaluation", "", "Measured with `scripts/evaluate_checkpoints.py` on the same validation tokens and "
                  "HellaSwag examples for every model:", "",
                  "| model | val loss | perplexity | HellaSwag acc | acc_norm |", "| --- | --- | --- | --- | --- |"]
        for row in [ours] + ([reference] if reference else []):
            lines.append(f"| {row['name']} | {row['val_loss']:.4f} | {row['perplexity']:.2f} | "
                         f"{_num(row.get('hellaswag_acc'), '{:.4f}')} | "
                         f"{_num(row.get('hellaswag_acc_norm'), '{:.4f}')} |")
        lines += ["", f"Validation tokens: {_num(ours.get('val_tokens'))}; HellaSwag examples: "
                  f"{_num(ours.get('hellaswag_examples'))}.", ""]
    else:
        lines += ["## Evaluation", "", "Not evaluated yet (run `scripts/evaluate_checkpoints.py ... --reference gpt2`).", ""]
    lines += [*_curves(folder), "## Intended use and limitations", "",
              "A research artifact for studying pretraining. It is a small model trained on web text: it "
              "produces fluent-looking but often wrong or incoherent text, reflects the biases of its training "
              "data, and is not instruction-tuned or safety-tuned. Do not use it for decisions about people or "
              "as a source of facts.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- staging
def stage_upload(checkpoint: str | Path, out_dir: str | Path, repo_id: str, run_dir: str | Path | None = None,
                 evaluation: dict | None = None, with_gpt2_export: bool = True) -> Path:
    """Assemble everything to upload in ``out_dir`` (replaced if it exists) and return it."""
    from modeling.tokenization import save_hf_tokenizer, tokenizer_info

    checkpoint, out = Path(checkpoint), Path(out_dir)
    if not (checkpoint / "config.json").exists() or not (checkpoint / "model.safetensors").exists():
        raise HubError(f"{checkpoint} is not a model folder (config.json and model.safetensors expected); pass "
                       "runs/<run>/final or runs/<run>/checkpoints/step_N/model.")
    clear_staging(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES + TOKENIZER_FILES:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, out / name)
    config = json.loads((checkpoint / "config.json").read_text())
    if not (out / "tokenizer.json").exists():
        save_hf_tokenizer(out, model_max_length=config.get("n_positions", 1024))
    (out / "tokenizer_info.json").write_text(json.dumps(tokenizer_info(), indent=2) + "\n")
    run_dir = Path(run_dir) if run_dir else run_dir_of(checkpoint)
    if run_dir is not None:
        _copy_run_files(run_dir, out)
    if evaluation:
        (out / "eval_results.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    if with_gpt2_export:
        _export_gpt2(checkpoint, out / GPT2_EXPORT_DIR)
    build_model_card(out, repo_id, evaluation).save(out / "README.md")
    # Every file by its path: a file added later, even inside plots/, is the user's and stops a re-staging.
    record_written(out, [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if not p.is_dir()])
    return out


def clear_staging(out: Path) -> None:
    """Empty a staging folder of an earlier staging (whose ``.written.json`` names everything in it); a folder
    holding anything else, or a place nobody means to clear, is refused untouched."""
    if not out.exists():
        return
    if not out.is_dir():
        raise HubError(f"The staging folder {out} is a file; pass a new folder (--staging_dir).")
    refuse_dangerous(out, "The staging folder")
    recorded = recorded_names(out) or set()

    def ours(path: Path) -> bool:  # recorded by its path; stagings of earlier versions recorded top-level names
        relative = path.relative_to(out).as_posix()
        return relative in recorded or relative.split("/")[0] in recorded or relative == WRITTEN_FILE

    foreign = [p for p in sorted(out.rglob("*")) if not p.is_dir() and not ours(p)]
    foreign += [p for p in sorted(out.iterdir()) if p.is_dir() and not any(p.iterdir()) and not ours(p)]
    refuse_foreign(foreign, out, "empty it to stage an upload", "Pass a new or empty --staging_dir.")
    for path in sorted(out.iterdir()):
        remove_path(path)


def _copy_run_files(run_dir: Path, out: Path) -> None:
    layout = RunLayout(run_dir)
    events = [p for p in layout.event_files() + sorted(layout.layers_dir.glob("h.*/" + EVENT_FILE_PREFIX + "*"))
              if p.is_file() and written_by_this_project(p)]  # the run's and its blocks' runs; not logs copied in
    for path in events:  # the event files only (not the checkpoints beside them), in the Hub's runs/ folder
        target = out / "runs" / path.relative_to(layout.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    analysis = layout.analysis_dir
    if not (analysis / "lossGraph.png").exists() and events:
        # Made into the staging folder, not the run's: staging never writes into the run (it may be read-only).
        from ..analysis.plots import write_plots  # matplotlib: only when plots must be made
        from ..analysis.report import build_report, write_report
        from ..analysis.runs import load_run

        run = load_run(run_dir)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        write_report(build_report(run), out / "plots", write_plots(run, out / "plots"))
        return
    if analysis.is_dir():  # what the analysis wrote, never the user's own notes beside it
        private = set(foreign_in_analysis(analysis))
        for path in sorted(analysis.rglob("*")):
            if path.is_file() and path not in private and path.name != WRITTEN_FILE:
                target = out / "plots" / path.relative_to(analysis)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def _export_gpt2(checkpoint: Path, folder: Path) -> None:
    from modeling import GPTForCausalLM
    from modeling.weight_conversion import export_gpt2, gpt2_export_problem

    model = GPTForCausalLM.from_pretrained(checkpoint)
    if gpt2_export_problem(model.config) is None:  # no biases, qk_norm and μP have no GPT2LMHeadModel equivalent
        export_gpt2(model, folder)
