"""Will it fit? The peak memory of one training process, per term, before a run launches.

All terms are bytes per process. N = micro_batch_size x seq_len tokens in a micro-step, C the width, I the MLP width
(4C), H the heads, V the (padded) vocabulary, L the blocks, P the parameters (the tied embedding once), a the
activation dtype's bytes (2 under bf16/fp16 autocast, 4 without), S = B x H x T x T the elements of one block's
attention matrix.

Persistent (fp32 master weights, as Accelerate keeps them; divided by the process count under FSDP2):
  weights 4P, AdamW state 8P (exp_avg, exp_avg_sq), Muon 4 bytes per hidden-matrix parameter (its momentum) with
  AdamW's 8 on the rest; DDP's gradient buckets 4P (a flat copy of every gradient, allocated when the model is
  wrapped); gradients 4P while they exist (from the first backward of a step to zero_grad; across micro-steps
  with accumulation). fp16 differs from bf16 only by the GradScaler's scale and found-inf flags (a few bytes):
  the unscale is in place.

Activations saved for the backward pass, per block, counted tensor by tensor from what autograd saves (tested
against a trace of the real block with autograd's saved-tensor hooks, sdpa and eager, with and without dropout,
fp32 and bf16/fp16 autocast):
  the part every kernel shares:  (8 + 3a) N C + 2a N I + 16 N  (the fp32 residual stream twice, the LayerNorms'
      statistics, the matmul inputs, the MLP's I-wide input and GELU output), + (8 C^2 + 4 C I) under autocast (the
      16-bit copies of the block's four weight matrices, which autocast makes in every forward), + 2 m N C with
      dropout (the two residual-branch dropout masks; m = 1 on CUDA, a boolean mask, and a on CPU, where dropout
      saves its scaled noise in the input's dtype);
  the attention, by kernel:
    fused (sdpa's flash / memory-efficient kernels, and sdpa on CPU without dropout): q, k, v and the output's
      log-sum-exp, 3a N C + 4 N H; nothing grows with T^2;
    eager (modeling_gpt.eager_attention_forward): contiguous copies of q, k^T and v (3a N C), the causal mask
      (T^2 bytes, built in every block) and the T x T matrices: the float32 softmax output (4 S), plus without
      dropout its 16-bit copy under autocast (2 S), or with dropout the dropout mask (m S) and the dropped
      probabilities (a S): 4 S (fp32), 6 S (autocast), 12 S (fp32 + dropout on CPU), 9 S (on CUDA), 8 S / 7 S
      (autocast + dropout, CPU / CUDA);
    sdpa on CPU with dropout: torch's math fallback (CPU's flash kernel has no dropout), which upcasts to float32:
      12 N C + 12 S (the softmax output, the dropout noise and the dropped probabilities), whatever the precision;
  qk_norm adds the per-head LayerNorms' statistics (16 N H) and 3a N C (the normalised q and k and a separate copy
  of the output); on CUDA under autocast, where layer_norm runs in float32, 14 N C (fused) or 8 N C (eager).
With activation checkpointing each block keeps only its fp32 input (4 N C), and one block's activations exist at a
time, during its recomputation in the backward.

The head and the loss (often the largest term at GPT-2 sizes, because V = 50304): the final LayerNorm's input and
output, the logits (N x V, held by the model output through the backward), the float32 log-softmax the loss saves
(4 N V), and, in the backward of the loss, its gradient and the logits' gradient (4 N V each) at once: the logits
term is N V (a + 12) at its peak (measured); with the z-loss (a log-sum-exp whose backward builds exp(x - lse)) it is
N V (a + 16), and N V (a + 20) under autocast (the float32 copy of the logits it saves). Under autocast add the
16-bit copy of the tied embedding (2 V C).

The peak is the largest of three moments, each the sum of what is alive then:
  (1) the backward of the loss: persistent + activations + the loss's backward temporaries (+ the gradients of
      earlier micro-steps with accumulation);
  (2) the backward of the last block (the first the backward reaches, all other blocks' activations still held):
      persistent + activations + the logits (held by the output) + the tied embedding's gradient (all gradients
      with accumulation) + that block's recomputed activations (checkpointing) + the temporaries of its attention
      backward. For eager attention these grow with T^2: the softmax backward holds its float32 output, the
      incoming and the outgoing gradient (12 S), and the first matmul's backward adds the gradient of the dropped
      probabilities to what the block saved: max(saved + g, 12) S in all, g = 4 bytes (fp32, or the CPU math
      fallback) or 2 (autocast) -- measured on CPU for all eight eager / math cases. At long T this moment, not the
      loss, is the peak;
  (3) the optimizer step: persistent + gradients (on a CPU, where AdamW is not fused, plus two temporaries the
      size of the largest parameter, the embedding), + on measured steps the float32 copies of every weight matrix
      that the layer_ratios and histograms callbacks take before the step (whole, even under FSDP).
Under FSDP2 add the gathered full parameters of two blocks (the one computing and the one prefetched) and of the
embeddings, in the parameters' dtype (all of them when it does not reshard after the forward). A budget keeps
1 GiB for the CUDA context and 10% for the allocator's fragmentation.

What it cannot know: memory taken by other processes on the card, torch.compile's workspace (usually smaller than
eager: it frees intermediates earlier), kernels that pick other algorithms on other cards (the attention kernel's
saved state differs by a few bytes per token between backends; sdpa can fall back to its math kernel, which stores
T x T matrices, for head sizes no fused kernel supports), attention kernels registered by user code (planned as
fused), fp8 and CPU offload (not planned).
"""

import math
from dataclasses import asdict, dataclass, field

from ..callback_spec import parse_callback_spec
from ..errors import UserError

GIB = 1024 ** 3
CONTEXT_BYTES = 1 * GIB  # the CUDA context and cuBLAS/cuDNN workspaces, per process
FRAGMENTATION = 0.10  # share of the card the caching allocator can waste
DEFAULT_MFU = 0.40
PRECISIONS = ("no", "bf16", "fp16")
OPTIMIZERS = ("adamw", "muon")
DEVICES = ("cuda", "cpu")
# Attention kernels by what they save for the backward: eager ones keep the T x T matrices, fused ones do not.
EAGER_KERNELS = ("eager", "paged|eager")
FUSED_KERNELS = ("sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")

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
    """What a plan needs to know about a run: the model, the batch, the layout, the precision and the kernels."""

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
    device: str = "cuda"  # cuda: fused AdamW, boolean dropout masks; cpu: AdamW's temporaries, sdpa's math fallback
    attn_implementation: str = "sdpa"  # sdpa | eager | any name registered in ALL_ATTENTION_FUNCTIONS
    dropout: float = 0.0
    qk_norm: bool = False
    bias: bool = True
    z_loss: bool = False  # PaLM's z-loss on (a log-sum-exp pass over the logits, with its own backward)
    n_inner: int | None = None  # MLP width (4 * n_embd when None: GPT-2)
    n_positions: int | None = None  # the position table (seq_len when None, as pretrain.py builds it)
    reshard_after_forward: bool = True  # FSDP: free each unit's gathered parameters after its forward
    weight_copies: int = 0  # float32 copies of the weight matrices the diagnostics hold across a measured step

    def __post_init__(self):
        problems = []
        for name in ("n_layer", "n_head", "n_embd", "vocab_size", "seq_len", "micro_batch_size", "grad_accum",
                     "num_processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer (got {value!r})")
        if isinstance(self.weight_copies, bool) or not isinstance(self.weight_copies, int) or self.weight_copies < 0:
            problems.append(f"weight_copies must be a count >= 0 (got {self.weight_copies!r})")
        for name in ("n_inner", "n_positions"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                problems.append(f"{name} must be a positive integer or None (got {value!r})")
        if not problems and self.n_embd % self.n_head:
            problems.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_positions is not None and not problems and self.seq_len > self.n_positions:
            problems.append(f"seq_len ({self.seq_len}) is longer than the model's context (n_positions="
                            f"{self.n_positions})")
        if self.mixed_precision not in PRECISIONS:
            problems.append(f"mixed_precision must be one of {', '.join(PRECISIONS)} (got {self.mixed_precision!r}; "
                            "fp8 is not planned)")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout!r})")
        if not isinstance(self.attn_implementation, str) or not self.attn_implementation:
            problems.append(f"attn_implementation must be a kernel name (got {self.attn_implementation!r})")
        if problems:
            raise UserError("Cannot plan this run: " + "; ".join(problems) + ".")

    @property
    def intermediate(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def block_parameters(self) -> int:
        c, i = self.n_embd, self.intermediate
        norm = 2 if self.bias else 1  # LayerNorm weight (and bias)
        matrices = 4 * c * c + 2 * c * i  # c_attn 3C^2, attn c_proj C^2, c_fc C I, mlp c_proj I C
        biases = (3 * c + c + i + c) if self.bias else 0
        qk = 2 * norm * self.head_dim if self.qk_norm else 0
        return matrices + biases + 2 * norm * c + qk

    @property
    def parameters(self) -> int:
        positions = self.n_positions or self.seq_len
        return (self.vocab_size + positions) * self.n_embd + self.n_layer * self.block_parameters + \
            (2 if self.bias else 1) * self.n_embd

    @property
    def hidden_matrix_parameters(self) -> int:
        return self.n_layer * (4 * self.n_embd ** 2 + 2 * self.n_embd * self.intermediate)

    @property
    def matrix_parameters(self) -> int:
        """Parameters of the 2-D weights (embeddings, position table and the blocks' matrices; the tied head once)."""
        return (self.vocab_size + (self.n_positions or self.seq_len)) * self.n_embd + self.hidden_matrix_parameters

    @property
    def autocast(self) -> bool:
        return self.mixed_precision in ("bf16", "fp16")

    @property
    def activation_bytes(self) -> int:
        return 2 if self.autocast else 4

    @property
    def tokens(self) -> int:
        return self.micro_batch_size * self.seq_len

    @property
    def attention_elements(self) -> int:
        """S: the elements of one block's attention matrix (B x H x T x T)."""
        return self.micro_batch_size * self.n_head * self.seq_len ** 2


def diagnostic_weight_copies(callbacks, diagnostics_every: int, histogram_every: int) -> int:
    """How many float32 copies of the weight matrices the run's callbacks hold across a measured optimizer step
    (layer_ratios and histograms each copy every matrix before the step to measure the update; whole tensors,
    gathered on every process under FSDP)."""
    copies = 0
    for spec in callbacks or []:
        name, kwargs = parse_callback_spec(spec)
        if name in ("layer_ratios", "histograms"):
            every = kwargs.get("every", histogram_every if name == "histograms" else diagnostics_every)
            copies += 1 if isinstance(every, int) and every > 0 else 0
    return copies


def attention_kernel(shape: Shape) -> str:
    """What the attention saves for its backward: 'eager' (the T x T matrices), 'math' (sdpa's float32 math fallback,
    which is what sdpa runs on CPU with dropout: the T x T matrices too) or 'fused' (O(T) statistics only)."""
    name = shape.attn_implementation
    if name in EAGER_KERNELS:
        return "eager"
    if name == "sdpa" and shape.device == "cpu" and shape.dropout > 0:
        return "math"
    return "fused"


def describe_kernel(shape: Shape) -> str:
    kind = attention_kernel(shape)
    if kind == "eager":
        return f"{shape.attn_implementation} (saves the T x T attention matrices of every block)"
    if kind == "math":
        return "sdpa (on CPU with dropout: the math fallback, which saves the T x T matrices in float32)"
    if shape.attn_implementation in FUSED_KERNELS:
        return f"{shape.attn_implementation} (fused: no T x T matrix is kept)"
    return f"{shape.attn_implementation} (not known to the planner: planned as a fused kernel)"


def _mask_bytes(shape: Shape, dtype_bytes: int) -> int:
    """Bytes per element that dropout saves: a boolean mask on CUDA (native_dropout), the scaled noise in the input's
    dtype on CPU."""
    return 1 if shape.device == "cuda" else dtype_bytes


def _matrix_bytes_per_element(shape: Shape) -> int:
    """Bytes per element of S that one block saves (0 for fused kernels)."""
    kind, a = attention_kernel(shape), shape.activation_bytes
    if kind == "fused":
        return 0
    if kind == "math":
        return 12  # float32 softmax output, dropout noise, dropped probabilities
    if shape.dropout > 0:
        return 4 + _mask_bytes(shape, a) + a  # float32 softmax output, dropout mask, dropped probabilities
    return 4 + (2 if shape.autocast else 0)  # float32 softmax output (and its 16-bit copy under autocast)


def attention_matrix_bytes(shape: Shape) -> int:
    """Bytes one block saves that grow with T^2 (module docstring): eager's matrices and causal mask, sdpa's math
    fallback's matrices; 0 for fused kernels."""
    per_element = _matrix_bytes_per_element(shape)
    if not per_element:
        return 0
    mask = shape.seq_len ** 2 if attention_kernel(shape) == "eager" else 0  # built (and saved) in every block
    return per_element * shape.attention_elements + mask


def attention_backward_bytes(shape: Shape) -> int:
    """Temporaries of one block's attention backward beyond what it saved (module docstring: (2)); 0 when fused."""
    saved = _matrix_bytes_per_element(shape)
    if not saved:
        return 0
    first_gradient = 4 if attention_kernel(shape) == "math" or not shape.autocast else 2
    return (max(saved + first_gradient, 12) - saved) * shape.attention_elements


def _qk_norm_bytes(shape: Shape) -> int:
    n, c, h, a = shape.tokens, shape.n_embd, shape.n_head, shape.activation_bytes
    if not shape.qk_norm:
        return 0
    if shape.autocast and shape.device == "cuda":  # CUDA autocast runs layer_norm in float32: fp32 copies of q, k
        per_token = 8 * c if attention_kernel(shape) == "eager" else 14 * c
    else:
        per_token = 3 * a * c
    return n * per_token + 16 * n * h


def block_activation_bytes(shape: Shape) -> int:
    """Bytes one block saves for its backward pass (module docstring), the T x T part included."""
    n, c, h, i, a = shape.tokens, shape.n_embd, shape.n_head, shape.intermediate, shape.activation_bytes
    kind = attention_kernel(shape)
    total = (8 + 3 * a) * n * c + 2 * a * n * i + 16 * n
    if shape.autocast:
        total += 8 * c * c + 4 * c * i  # the 16-bit weight copies
    if shape.dropout > 0:
        total += 2 * _mask_bytes(shape, a) * n * c  # attention and MLP output dropout
    if kind == "fused":
        total += 3 * a * n * c + 4 * n * h  # q, k, v (one storage) and the log-sum-exp
    elif kind == "math":
        total += 12 * n * c  # float32 contiguous q, k^T, v
    else:
        total += 3 * a * n * c  # contiguous q, k^T, v
    return total + _qk_norm_bytes(shape) + attention_matrix_bytes(shape)


def logits_bytes_per_element(shape: Shape) -> int:
    """Bytes per logit at the peak of the loss's backward (module docstring; measured on CPU)."""
    a = shape.activation_bytes
    if shape.z_loss:
        return a + 16 + (4 if shape.autocast else 0)
    return a + 12


@dataclass
class Plan:
    """The terms of the peak (bytes per process), what is alive at each moment of a step, and what follows."""

    shape: dict
    terms: dict[str, int]
    peak_bytes: int
    peak_phase: str
    phases: dict[str, int] = field(default_factory=dict)
    attention: str = ""
    budget_bytes: int | None = None
    card: str | None = None
    fits: bool | None = None
    largest_micro_batch: int | None = None
    accumulation_for_it: int | None = None
    ways_out: list[str] = field(default_factory=list)  # when no micro-batch fits: the settings that would
    tokens_per_second: float | None = None
    mfu: float = DEFAULT_MFU
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


LOSS_PHASE = "backward of the loss"
BLOCK_PHASE = "backward of the last block"
STEP_PHASE = "optimizer step (all gradients)"


def estimate(shape: Shape) -> Plan:
    """The peak bytes per process, term by term: what persists (weights, optimizer state), what the forward stores,
    what the loss and the backward add, and what the optimizer step needs; the peak is the largest of three phases."""
    p, shard = shape.parameters, shape.num_processes if shape.sharded else 1
    n, c, v = shape.tokens, shape.n_embd, shape.vocab_size
    terms = _persistent_terms(shape)
    persistent = sum(terms.values())
    gradients = 4 * p // shard
    block = _activation_terms(shape, terms)
    stored = sum(value for name, value in terms.items() if name.startswith("activations"))
    loss_name = "logits and z-loss (N x V, peak of its backward)" if shape.z_loss else \
        "logits and loss (N x V, peak of its backward)"
    terms[loss_name] = n * v * logits_bytes_per_element(shape)
    embedding_copy = _add(terms, f"{shape.mixed_precision} copy of the tied embedding",
                          2 * v * c if shape.autocast else 0)
    gathered = _gathered_term(shape, terms)
    earlier = _add(terms, "gradients of earlier micro-steps", gradients if shape.grad_accum > 1 else 0)
    recomputed = _add(terms, "one block recomputed in the backward (checkpointing)",
                      block if shape.checkpointing else 0)
    temporaries = _add(terms, "attention backward temporaries (one block)", attention_backward_bytes(shape))
    cpu_adamw = _add(terms, "AdamW step temporaries (CPU, unfused)",  # the unfused AdamW: per-parameter temps
                     2 * 4 * v * c // shard if shape.device != "cuda" else 0)
    snapshots = _add(terms, "diagnostics: float32 weight copies across a measured step",  # whole under FSDP
                     shape.weight_copies * 4 * shape.matrix_parameters)
    phases = {
        LOSS_PHASE: persistent + stored + terms[loss_name] + embedding_copy + gathered + earlier,
        BLOCK_PHASE: persistent + stored + recomputed + temporaries + n * v * shape.activation_bytes + gathered +
        (earlier or 4 * v * c // shard),  # the tied embedding's gradient exists once the head's backward ran
        STEP_PHASE: persistent + gradients + cpu_adamw + snapshots,
    }
    phase = max(phases, key=phases.get)
    return Plan(shape=asdict(shape), terms=terms, peak_bytes=phases[phase], peak_phase=phase, phases=phases,
                attention=describe_kernel(shape), notes=shape_notes(shape))


def _add(terms: dict, name: str, value: int) -> int:
    """A term that only some runs have: listed when it is not zero; its value either way."""
    if value:
        terms[name] = value
    return value


def _persistent_terms(shape: Shape) -> dict[str, int]:
    """What every process holds for the whole run: the weights, the optimizer's state, DDP's gradient buckets."""
    p, shard = shape.parameters, shape.num_processes if shape.sharded else 1
    terms = {"weights (fp32)": 4 * p // shard}
    if shape.optimizer == "muon":
        hidden = shape.hidden_matrix_parameters
        terms["optimizer state (Muon momentum + AdamW on the rest)"] = (4 * hidden + 8 * (p - hidden)) // shard
    else:
        terms["optimizer state (AdamW)"] = 8 * p // shard
    if shape.num_processes > 1 and not shape.sharded:
        terms["DDP gradient buckets"] = 4 * p
    return terms


def _activation_terms(shape: Shape, terms: dict) -> int:
    """What the forward stores for the backward (added to ``terms``); returns one block's activations."""
    n, c, a = shape.tokens, shape.n_embd, shape.activation_bytes
    block, matrices = block_activation_bytes(shape), attention_matrix_bytes(shape)
    if shape.checkpointing:
        terms["activations: block inputs (checkpointing)"] = shape.n_layer * 4 * n * c
    else:
        terms["activations: blocks"] = shape.n_layer * (block - matrices)
        if matrices:
            kind = "eager" if attention_kernel(shape) == "eager" else "sdpa math fallback"
            terms[f"activations: attention matrices ({kind}, B x H x T x T per block)"] = shape.n_layer * matrices
    if shape.dropout > 0:
        terms["activations: embedding dropout mask"] = _mask_bytes(shape, 4) * n * c
    terms["activations: final LayerNorm"] = (4 + a) * n * c + 8 * n  # its fp32 input and the head's input
    return block


def _gathered_term(shape: Shape, terms: dict) -> int:
    """Under FSDP, the parameters gathered at once: two blocks and the embeddings (resharding after the forward),
    else all of them."""
    if not shape.sharded:
        return 0
    dtype, c = (2 if shape.autocast else 4), shape.n_embd
    if shape.reshard_after_forward:
        gathered = dtype * (2 * shape.block_parameters + (shape.vocab_size + (shape.n_positions or shape.seq_len)) * c)
        terms["FSDP2: gathered blocks (computing + prefetched) and embeddings"] = gathered
    else:
        gathered = dtype * shape.parameters
        terms["FSDP: all parameters gathered (no resharding after the forward)"] = gathered
    return gathered


def _eager_matrices_bytes(shape: Shape) -> int:
    """What the attention matrices of every block would add if the kernel kept them as eager attention does."""
    return shape.n_layer * attention_matrix_bytes(Shape(**{**asdict(shape), "attn_implementation": "eager"}))


def shape_notes(shape: Shape) -> list[str]:
    """What the user should know about a shape that the numbers alone do not say."""
    notes = []
    name, kind = shape.attn_implementation, attention_kernel(shape)
    if kind == "fused" and name not in FUSED_KERNELS:
        notes.append(f"attention {name!r} is not known to the planner: planned as a fused kernel (no T x T matrix); "
                     f"if it keeps the attention matrices as eager does, add about "
                     f"{format_bytes(_eager_matrices_bytes(shape))}.")
    if name == "paged|eager":
        notes.append("paged|eager is meant for generation with a paged cache: in a training forward it applies no "
                     "causal mask and no attention dropout (the model would see the tokens it predicts). Train with "
                     "sdpa or eager.")
    if name == "sdpa" and shape.device == "cuda" and (shape.head_dim % 8 or shape.head_dim > 256):
        notes.append(f"head size {shape.head_dim}: sdpa's fused CUDA kernels may not support it and fall back to the "
                     f"math kernel, which keeps the T x T matrices (about "
                     f"{format_bytes(_eager_matrices_bytes(shape))} more than planned).")
    if kind == "math":
        notes.append("sdpa on CPU with dropout runs torch's math fallback (the CPU flash kernel has no dropout): "
                     "it keeps float32 T x T matrices like eager; on CUDA the fused kernels would not.")
    return notes


def budget(total_memory: int) -> int:
    """What a process may plan to use on a card of ``total_memory`` bytes (0 when it is all taken by the context)."""
    return max(0, int((total_memory - CONTEXT_BYTES) * (1 - FRAGMENTATION)))


def plan_run(shape: Shape, total_memory: int | None = None, card: str | None = None,
             total_batch_tokens: int | None = None, peak_flops: float | None = None,
             mfu: float = DEFAULT_MFU) -> Plan:
    """``estimate`` plus, for a card, whether it fits and the largest micro-batch that does (with the accumulation
    that keeps ``total_batch_tokens``), and the tokens/s at ``mfu`` of ``peak_flops`` per process."""
    if isinstance(mfu, bool) or not isinstance(mfu, (int, float)) or not math.isfinite(mfu) or not 0 < mfu <= 1:
        raise UserError(f"MFU must be a fraction in (0, 1] (got {mfu!r}; 0.40 means 40%).")
    if total_memory is not None and total_memory <= CONTEXT_BYTES:
        raise UserError(f"the card's memory ({format_bytes(total_memory)}) must be more than the 1 GiB the planner "
                         "keeps for the CUDA context.")
    if peak_flops is not None and (not math.isfinite(peak_flops) or peak_flops <= 0):
        raise UserError(f"peak FLOP/s must be positive (got {peak_flops!r}).")
    if total_batch_tokens is not None and total_batch_tokens < 1:
        raise UserError(f"total_batch_tokens must be positive (got {total_batch_tokens!r}).")
    plan = estimate(shape)
    plan.card, plan.mfu = card, mfu
    if total_memory is not None:
        plan.budget_bytes = budget(total_memory)
        plan.fits = plan.peak_bytes <= plan.budget_bytes
        plan.largest_micro_batch, plan.accumulation_for_it = largest_micro_batch(shape, plan.budget_bytes,
                                                                                total_batch_tokens)
        if not plan.largest_micro_batch:
            plan.ways_out = ways_out(shape, plan.budget_bytes, total_batch_tokens)
    if peak_flops:
        flops_per_token = 6 * (shape.parameters - (shape.n_positions or shape.seq_len) * shape.n_embd) + \
            12 * shape.n_layer * shape.n_embd * shape.seq_len
        plan.tokens_per_second = mfu * peak_flops * shape.num_processes / flops_per_token
        slower = (["activation checkpointing recomputes every forward (about a third more work)"]
                  if shape.checkpointing else []) + \
            ([f"{shape.attn_implementation} attention is slower than a fused kernel"]
             if attention_kernel(shape) != "fused" else [])
        if slower:
            plan.notes.append(f"MFU counts the model's FLOPs only: {' and '.join(slower)}, so expect a lower MFU "
                              "than the same run without it.")
    return plan


def _divisors(value: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(value) + 1) if value % d == 0]
    return sorted(set(small + [value // d for d in small]))


def largest_micro_batch(shape: Shape, budget_bytes: int,
                        total_batch_tokens: int | None) -> tuple[int | None, int | None]:
    """The largest micro-batch (a divisor of the per-process share of the total batch, when given) whose peak fits,
    and the accumulation that keeps the total batch. Every setting of ``shape`` but the micro-batch is kept."""

    def fits(micro: int, accumulation: int) -> bool:
        candidate = Shape(**{**asdict(shape), "micro_batch_size": micro, "grad_accum": accumulation})
        return estimate(candidate).peak_bytes <= budget_bytes

    if total_batch_tokens:
        per_process_sequences = total_batch_tokens // (shape.seq_len * shape.num_processes)
        if per_process_sequences < 1:
            return None, None
        # Not monotone at the end (one micro-step needs no gradients kept across micro-steps): try every divisor.
        for micro in reversed(_divisors(per_process_sequences)):
            if fits(micro, per_process_sequences // micro):
                return micro, per_process_sequences // micro
        return None, None
    low, high = 0, max(shape.micro_batch_size, 1024)  # without a total batch: accumulation 1, monotone in micro
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle, 1):
            low = middle
        else:
            high = middle - 1
    return (low or None), None


def format_bytes(value: float) -> str:
    return f"{value / GIB:,.2f} GiB" if value >= GIB / 10 else f"{value / 2 ** 20:,.1f} MiB"


def describe(plan: Plan) -> str:
    shape = plan.shape
    layout = ("FSDP" if shape["sharded"] else "DDP") if shape["num_processes"] > 1 else "one process"
    extras = [f"attention {plan.attention}"]
    if shape["dropout"]:
        extras.append(f"dropout {shape['dropout']:g}")
    if shape["qk_norm"]:
        extras.append("qk_norm")
    if shape["z_loss"]:
        extras.append("z-loss")
    extras.append("activation checkpointing" if shape["checkpointing"] else "no activation checkpointing")
    lines = [f"{shape['n_layer']} layers x width {shape['n_embd']} ({plan_parameters(plan):,} parameters), micro-batch "
             f"{shape['micro_batch_size']} x {shape['seq_len']} tokens, accumulation {shape['grad_accum']}, "
             f"{shape['num_processes']} process(es) ({layout}) on {shape['device']}, "
             f"precision {shape['mixed_precision']}, optimizer {shape['optimizer']}",
             "; ".join(extras), "", "per process:"]
    width = max(max(len(name) for name in plan.terms), *(len(f"peak ({name})") for name in plan.phases))
    lines += [f"  {name.ljust(width)}  {format_bytes(value):>12}" for name, value in plan.terms.items()]
    lines += ["", "alive at once:"]
    lines += [f"  {('at the ' + name).ljust(width)}  {format_bytes(value):>12}" for name, value in plan.phases.items()]
    lines.append(f"  {'peak (' + plan.peak_phase + ')':<{width}}  {format_bytes(plan.peak_bytes):>12}")
    if plan.budget_bytes is not None:
        verdict = "fits" if plan.fits else "DOES NOT FIT"
        lines += ["", f"{plan.card}: {format_bytes(plan.budget_bytes)} usable per process (1 GiB for the CUDA context, "
                  f"{100 * FRAGMENTATION:.0f}% for the allocator): {verdict}."]
        if plan.largest_micro_batch:
            accumulation = f", accumulation {plan.accumulation_for_it}" if plan.accumulation_for_it else ""
            lines.append(f"largest micro-batch that fits: {plan.largest_micro_batch}{accumulation} (the same total "
                         "batch and settings)")
        else:
            lines.append("no micro-batch fits; what would: " + "; or ".join(plan.ways_out))
    if plan.tokens_per_second:
        lines.append(f"expected throughput at {100 * plan.mfu:.0f}% MFU: {plan.tokens_per_second:,.0f} tokens/s "
                     "(all processes)")
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


def ways_out(shape: Shape, budget_bytes: int, total_batch_tokens: int | None) -> list[str]:
    """The settings that would make the run fit when no micro-batch does, each with the micro-batch it allows (all of
    them together when none is enough alone)."""
    options = []
    if attention_kernel(shape) == "eager":
        options.append(("--attn_implementation sdpa", {"attn_implementation": "sdpa"}))
    if attention_kernel(shape) == "math":
        options.append(("--dropout 0 (sdpa on CPU keeps T x T matrices only with dropout)", {"dropout": 0.0}))
    if not shape.checkpointing:
        options.append(("--gradient_checkpointing true", {"checkpointing": True}))
    if not shape.sharded and shape.num_processes > 1:
        options.append(("FSDP2 (configs/accelerate/fsdp.yaml)", {"sharded": True}))

    def allows(changes: dict) -> str | None:
        micro, accumulation = largest_micro_batch(Shape(**{**asdict(shape), **changes}), budget_bytes,
                                                  total_batch_tokens)
        if not micro:
            return None
        return f"micro-batch {micro}" + (f", accumulation {accumulation}" if accumulation else "")

    ways = [f"{label}: {found}" for label, changes in options if (found := allows(changes))]
    if not ways and len(options) > 1:
        together = allows({key: value for _, changes in options for key, value in changes.items()})
        if together:
            ways.append(" with ".join(label for label, _ in options) + f" together: {together}")
    return ways or ["none of the settings the planner knows is enough: a shorter --seq_len, a smaller model, or "
                    "more processes with FSDP2"]


def plan_parameters(plan: Plan) -> int:
    return Shape(**plan.shape).parameters
