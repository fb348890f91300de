"""Will it fit? The peak memory of one training process, per term, before a run launches.

All terms are bytes per process. N = micro_batch_size x seq_len tokens in a micro-step, C the width, H the heads, V
the (padded) vocabulary, L the blocks, P the parameters (the tied embedding once), a the activation dtype's bytes
(2 under bf16/fp16 autocast, 4 without).

Persistent (fp32 master weights, as Accelerate keeps them; divided by the process count under FSDP2):
  weights 4P, AdamW state 8P (exp_avg, exp_avg_sq), Muon 4 bytes per hidden-matrix parameter (its momentum) with
  AdamW's 8 on the rest; DDP's gradient buckets 4P (a flat copy of every gradient, allocated when the model is
  wrapped); gradients 4P while they exist (from the first backward of a step to zero_grad; across micro-steps
  with accumulation).

Activations saved for the backward pass, per block, counted tensor by tensor from what autograd saves (tested
against a trace of the real block with autograd's saved-tensor hooks):
  without autocast (a = 4):  64 N C + 16 N + 4 N H
  bf16 autocast (a = 2):     36 N C + 16 N + 4 N H + 24 C^2  (the bf16 copies of the block's four weight matrices,
                                                              which autocast makes in every forward)
  (the fp32 residual and LayerNorm inputs, the matmul inputs, q/k/v, the attention output and its log-sum-exp
  from the fused kernel, the MLP's 4C-wide input and GELU output). With activation checkpointing each block keeps
  only its fp32 input (4 N C) and one block's activations exist at a time, during its recomputation.

The head and the loss (often the largest term at GPT-2 sizes, because V = 50304): the final LayerNorm's input and
output, the logits (N x V, held by the model output through the backward), the float32 log-softmax the loss saves
(4 N V), and, in the backward of the loss, its gradient and the logits' gradient (4 N V each) at once: the logits
term is N V (a + 4 + 4 + 4) at its peak, plus, under autocast, the bf16 copy of the tied embedding (2 V C).

The peak is the largest of: (1) persistent + activations + the loss's backward temporaries (+ the gradients of
earlier micro-steps with accumulation); (2) persistent + gradients (the optimizer step; on a CPU, where AdamW is not
fused, plus two temporaries the size of the largest parameter, the embedding). Under FSDP2 add the
gathered full parameters of two blocks (the one computing and the one prefetched) and of the embeddings, in the
parameters' dtype. A budget keeps 1 GiB for the CUDA context and 10% for the allocator's fragmentation.

What it cannot know: memory taken by other processes on the card, torch.compile's workspace (usually smaller than
eager: it frees intermediates earlier), and kernels that pick other algorithms on other cards (the attention
kernel's saved state differs by a few bytes per token between backends).
"""

from dataclasses import asdict, dataclass, field

GIB = 1024 ** 3
CONTEXT_BYTES = 1 * GIB  # the CUDA context and cuBLAS/cuDNN workspaces, per process
FRAGMENTATION = 0.10  # share of the card the caching allocator can waste
DEFAULT_MFU = 0.40

# Cards by memory (bytes as reported by torch.cuda.get_device_properties().total_memory, rounded), matched in order.
CARD_MEMORY = (
    ("H200", 141 * 10 ** 9), ("GH200", 96 * GIB), ("H100 NVL", 94 * 10 ** 9), ("H100", 80 * GIB),
    ("A100 80GB", 80 * GIB), ("A100", 40 * GIB), ("L40S", 48 * GIB), ("L40", 48 * GIB), ("A6000", 48 * GIB),
    ("L4", 24 * GIB), ("4090", 24 * GIB), ("3090", 24 * GIB), ("A10", 24 * GIB), ("V100 32GB", 32 * GIB),
    ("V100", 16 * GIB), ("T4", 16 * GIB),
)


def card_memory(name: str) -> int | None:
    """Memory of a card named like 'H100 80GB', 'A100 40GB', 'L4' (the first entry of CARD_MEMORY it contains)."""
    upper = name.upper()
    for key, size in CARD_MEMORY:
        if all(part in upper for part in key.upper().split()):
            return size
    return None


@dataclass
class Shape:
    """What a plan needs to know about a run: the model, the batch, the layout and the precision."""

    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    seq_len: int
    micro_batch_size: int
    grad_accum: int
    num_processes: int
    mixed_precision: str  # "no", "bf16", "fp16"
    sharded: bool  # FSDP2: parameters, gradients and optimizer state divided by the process count
    checkpointing: bool
    optimizer: str  # adamw | muon
    device: str = "cuda"  # cuda: fused AdamW; cpu: AdamW's per-parameter temporaries at the step

    @property
    def parameters(self) -> int:
        c, v, t, layers = self.n_embd, self.vocab_size, self.seq_len, self.n_layer
        block = 12 * c * c + 13 * c  # c_attn (3C^2 + 3C), c_proj (C^2 + C), c_fc (4C^2 + 4C), c_proj (4C^2 + C), 2 LN
        return v * c + t * c + layers * block + 2 * c

    @property
    def hidden_matrix_parameters(self) -> int:
        return self.n_layer * 12 * self.n_embd ** 2

    @property
    def autocast(self) -> bool:
        return self.mixed_precision in ("bf16", "fp16")

    @property
    def tokens(self) -> int:
        return self.micro_batch_size * self.seq_len


def block_activation_bytes(shape: Shape) -> int:
    """Bytes one block saves for its backward pass (module docstring)."""
    n, c, h = shape.tokens, shape.n_embd, shape.n_head
    if shape.autocast:
        return 36 * n * c + 16 * n + 4 * n * h + 24 * c * c
    return 64 * n * c + 16 * n + 4 * n * h


@dataclass
class Plan:
    """The terms of the peak (bytes per process) and what follows from them."""

    shape: dict
    terms: dict[str, int]
    peak_bytes: int
    peak_phase: str
    budget_bytes: int | None = None
    card: str | None = None
    fits: bool | None = None
    largest_micro_batch: int | None = None
    accumulation_for_it: int | None = None
    tokens_per_second: float | None = None
    mfu: float = DEFAULT_MFU
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(shape: Shape) -> Plan:
    p, shard = shape.parameters, shape.num_processes if shape.sharded else 1
    a = 2 if shape.autocast else 4
    n, c, v = shape.tokens, shape.n_embd, shape.vocab_size
    terms = {"weights (fp32)": 4 * p // shard}
    if shape.optimizer == "muon":
        hidden = shape.hidden_matrix_parameters
        terms["optimizer state (Muon momentum + AdamW on the rest)"] = (4 * hidden + 8 * (p - hidden)) // shard
    else:
        terms["optimizer state (AdamW)"] = 8 * p // shard
    if shape.num_processes > 1 and not shape.sharded:
        terms["DDP gradient buckets"] = 4 * p
    gradients = 4 * p // shard
    block = block_activation_bytes(shape)
    if shape.checkpointing:
        terms["activations: block inputs (checkpointing)"] = shape.n_layer * 4 * n * c
        terms["activations: one block recomputed"] = block
    else:
        terms["activations: blocks"] = shape.n_layer * block
    terms["activations: final LayerNorm"] = (4 + a) * n * c + 8 * n  # its fp32 input and the head's input
    terms["logits and loss (N x V, peak of its backward)"] = n * v * (a + 4 + 4 + 4)
    if shape.autocast:
        terms["bf16 copy of the tied embedding"] = 2 * v * c
    if shape.sharded:
        block_params = 12 * c * c + 13 * c
        dtype = 2 if shape.autocast else 4
        terms["FSDP2: gathered blocks (computing + prefetched) and embeddings"] = dtype * (
            2 * block_params + (v + shape.seq_len) * c)
    if shape.grad_accum > 1:
        terms["gradients of earlier micro-steps"] = gradients
    during_backward = sum(terms.values())
    at_step = sum(value for name, value in terms.items() if not name.startswith(("activations", "logits", "bf16",
                                                                                   "FSDP2", "gradients of")))
    at_step += gradients
    if shape.device != "cuda":  # the unfused AdamW works parameter by parameter: temporaries of the largest one
        at_step += 2 * 4 * v * c // shard
    phase = "backward of the loss" if during_backward >= at_step else "optimizer step (all gradients)"
    return Plan(shape=asdict(shape), terms=terms, peak_bytes=max(during_backward, at_step), peak_phase=phase)


def budget(total_memory: int) -> int:
    """What a process may plan to use on a card of ``total_memory`` bytes."""
    return int((total_memory - CONTEXT_BYTES) * (1 - FRAGMENTATION))


def plan_run(shape: Shape, total_memory: int | None = None, card: str | None = None,
             total_batch_tokens: int | None = None, peak_flops: float | None = None,
             mfu: float = DEFAULT_MFU) -> Plan:
    """``estimate`` plus, for a card, whether it fits and the largest micro-batch that does (with the accumulation
    that keeps ``total_batch_tokens``), and the tokens/s at ``mfu`` of ``peak_flops`` per process."""
    plan = estimate(shape)
    plan.card, plan.mfu = card, mfu
    if total_memory:
        plan.budget_bytes = budget(total_memory)
        plan.fits = plan.peak_bytes <= plan.budget_bytes
        plan.largest_micro_batch, plan.accumulation_for_it = largest_micro_batch(shape, plan.budget_bytes,
                                                                                total_batch_tokens)
    if peak_flops:
        flops_per_token = 6 * (shape.parameters - shape.seq_len * shape.n_embd) + \
            12 * shape.n_layer * shape.n_embd * shape.seq_len
        plan.tokens_per_second = mfu * peak_flops * shape.num_processes / flops_per_token
    return plan


def largest_micro_batch(shape: Shape, budget_bytes: int,
                        total_batch_tokens: int | None) -> tuple[int | None, int | None]:
    """The largest micro-batch (a divisor of the per-process share of the total batch, when given) whose peak fits,
    and the accumulation that keeps the total batch."""
    per_process_sequences = (total_batch_tokens // (shape.seq_len * shape.num_processes)) if total_batch_tokens else \
        max(shape.micro_batch_size, 1024)
    best = None
    for micro in range(1, per_process_sequences + 1):
        if total_batch_tokens and per_process_sequences % micro:
            continue
        candidate = Shape(**{**asdict(shape), "micro_batch_size": micro,
                             "grad_accum": max(1, per_process_sequences // micro) if total_batch_tokens else 1})
        if estimate(candidate).peak_bytes <= budget_bytes:
            best = micro
    if best is None:
        return None, None
    return best, (per_process_sequences // best if total_batch_tokens else None)


def format_bytes(value: float) -> str:
    return f"{value / GIB:,.2f} GiB" if value >= GIB / 10 else f"{value / 2 ** 20:,.1f} MiB"


def describe(plan: Plan) -> str:
    shape = plan.shape
    layout = "FSDP2" if shape["sharded"] else "DDP" if shape["num_processes"] > 1 else "one process"
    lines = [f"{shape['n_layer']} layers x width {shape['n_embd']} ({plan_parameters(plan):,} parameters), micro-batch "
             f"{shape['micro_batch_size']} x {shape['seq_len']} tokens, accumulation {shape['grad_accum']}, "
             f"{shape['num_processes']} process(es) ({layout}), "
             f"precision {shape['mixed_precision']}, optimizer {shape['optimizer']}"
             f"{', activation checkpointing' if shape['checkpointing'] else ''}", "", "per process:"]
    width = max(len(name) for name in plan.terms)
    lines += [f"  {name.ljust(width)}  {format_bytes(value):>12}" for name, value in plan.terms.items()]
    lines.append(f"  {'peak (' + plan.peak_phase + ')':<{width}}  {format_bytes(plan.peak_bytes):>12}")
    if plan.budget_bytes is not None:
        verdict = "fits" if plan.fits else "DOES NOT FIT"
        lines += ["", f"{plan.card}: {format_bytes(plan.budget_bytes)} usable per process (1 GiB for the CUDA context, "
                  f"{100 * FRAGMENTATION:.0f}% for the allocator): {verdict}."]
        if plan.largest_micro_batch:
            accumulation = f", accumulation {plan.accumulation_for_it}" if plan.accumulation_for_it else ""
            lines.append(f"largest micro-batch that fits: {plan.largest_micro_batch}{accumulation} (the same total "
                         "batch)")
        else:
            lines.append("no micro-batch fits: turn on activation checkpointing (--gradient_checkpointing true) or "
                         "shard with FSDP2 (configs/accelerate/fsdp.yaml)")
    if plan.tokens_per_second:
        lines.append(f"expected throughput at {100 * plan.mfu:.0f}% MFU: {plan.tokens_per_second:,.0f} tokens/s "
                     "(all processes)")
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


def plan_parameters(plan: Plan) -> int:
    return Shape(**plan.shape).parameters

