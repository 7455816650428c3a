/* decoder.h - the Qwen3-style decoder with KSA (KSA_SPEC §5-§7, §9.7): parameters, their
 * initialisation, and the forward pass on the tape (backward is the tape's replay).      */
#ifndef KSA_MODEL_DECODER_H
#define KSA_MODEL_DECODER_H

#include "autograd/params.h"
#include "autograd/tape.h"
#include "model/config.h"

/* The eps of q_norm_summary / k_norm_summary: fixed at 1e-6 whatever rms_norm_eps is
 * (KSA_SPEC.md 5.4 and 6.1; the training reference hard-codes it). */
#define KSA_SUMMARY_QK_NORM_EPS 1e-6

/* Index of each parameter of a layer in the parameter table, -1 when absent. */
typedef struct {
    long input_layernorm, input_layernorm_summary;
    long q_proj, k_proj, v_proj, o_proj, q_norm, k_norm;
    long q_proj_summary, k_proj_summary, v_proj_summary, q_norm_summary, k_norm_summary;
    long post_attention_layernorm, gate_proj, up_proj, down_proj;
} ksa_layer_params;

typedef struct {
    ksa_model_config config;     /* as given (written back to checkpoints unchanged) */
    ksa_model_layout layout;     /* resolved per-layer kinds and windows */
    size_t D, I, V, Hq, Hkv, dh; /* hidden, intermediate, vocab, heads, head_dim */
    ksa_params params;           /* owned: names, flat data and grad buffers */
    long embed_tokens, summary_embedding, norm, lm_head; /* -1 when absent */
    ksa_layer_params *layers;                            /* owned, n_layers entries */
    /* The annealing coefficient m of KSA_SPEC §5.5 every forward (training, evaluation and
     * model/decode.c) uses: summary rows of summary layers take m·(own q/k/v) + (1-m)·(the
     * shared q/k/v). 1 after ksa_model_declare (the summary projections alone, as without
     * summary_mix_qkv); the trainer sets ksa_summary_mix_coeff(config, step + 1) before each
     * step and the coefficient of the last completed step before validating; evaluation and
     * sampling of a checkpoint set that of its /train step (ksa_model_mix_for_checkpoint).
     * Only read when layout.mix_qkv.                                                      */
    double summary_mix;
    int recompute; /* activation recomputation: the forward keeps only each layer's input
                    * and output; the backward re-runs the layer (set before sizing) */
    /* context parallelism (dist/context.h), borrowed; NULL or P = 1: whole sequences. With
     * P > 1 a forward's T is this rank's block length and tokens its block's rows
     * (tokens t0 ... t0 + T of every sequence): the loss is the block's targets' share. */
    struct ksa_cp_s *cp;
    /* steps run ksa_model_forward_distill (set before sizing: the arena then holds the
     * teacher's logits and attention outputs too) */
    int distill;
} ksa_model;

/* Resolves the configuration, declares every parameter (KSA_SPEC §7.1 names) and allocates
 * the buffers (zeroed). Returns KSA_EINVAL with the configuration's message.             */
ksa_status ksa_model_init(ksa_model *m, const ksa_model_config *c);
/* The same with the flat buffers padded so that n_ranks equal slices cover them. */
ksa_status ksa_model_init_for_ranks(ksa_model *m, const ksa_model_config *c, int n_ranks);
/* The same without allocating the buffers: names, shapes and counts only (sizing a model
 * that does not fit this machine). ksa_model_free releases it.                           */
ksa_status ksa_model_declare(ksa_model *m, const ksa_model_config *c);
/* Declared and padded for n_ranks; ksa_params_alloc(&m->params) completes
 * ksa_model_init_for_ranks (the memory plan is printed in between). */
ksa_status ksa_model_declare_for_ranks(ksa_model *m, const ksa_model_config *c, int n_ranks);
void ksa_model_free(ksa_model *m);

/* From-scratch initialisation, KSA_SPEC §9.7, a pure function of the seed. */
void ksa_model_init_weights(ksa_model *m, uint64_t seed);

/* Forward on the tape. tokens: [nseq, T + 1] rows (inputs = first T, targets = last T, all
 * counted, KSA_SPEC §6.3). Returns the loss tensor: sum of the nseq*T token cross-entropies
 * divided by `norm` (the number of counted targets of the global batch). *loss_value gets
 * the same in double; *logits (may be NULL) the [nseq*T, V] logits.                      */
ksa_tensor *ksa_model_forward(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq,
                              size_t T, double norm, double *loss_value, ksa_tensor **logits);
/* The same, with the cross-entropy of every target (nats, not divided by norm) into
 * target_loss[nseq * T] (row-major [nseq, T]; entry t of a row is the target at token t + 1,
 * predicted from tokens 0 ... t). Their sum in row order, divided by norm, is *loss_value. */
ksa_tensor *ksa_model_forward_per_target(ksa_model *m, ksa_tape *tp, const int32_t *tokens,
                                         size_t nseq, size_t T, double norm, double *loss_value,
                                         double *target_loss);

/* ---- attention distillation (KSA_SPEC §9.2) ---------------------------------------------- */
typedef struct {
    /* the weights of the terms (KSA_SPEC §9.2 defaults: 1, 5, 5, 0), the clamp of the
     * attention term's squared errors (0.1) and its optional per-row RMS normalisation */
    double lm_weight, attn_weight, kl_weight, cos_weight, clamp;
    int rms_norm;
    /* out: each term's value, unweighted: cross-entropy, attention (mean over summary layers
     * of the mean clamped squared error over elements), KL(teacher || student) per target,
     * cosine distance per row (0 unless cos_weight > 0) */
    double ce, attn, kl, cos;
} ksa_distill;
ksa_distill ksa_distill_defaults(void);
/* The distillation loss of nseq x T tokens (rows of T + 1): the teacher (the same weights as
 * a plain causal model on the text, positions from the block's start; no tape, layer by layer)
 * first, then the KSA forward on the tape, and the weighted sum
 *   lm_weight CE + attn_weight L_attn + kl_weight KL + cos_weight L_cos,
 * each term's sums divided by the counts of the global batch: norm targets (CE, KL, cosine per
 * row) and norm x hidden_size elements (L_attn). Not with m->recompute.                  */
ksa_tensor *ksa_model_forward_distill(ksa_model *m, ksa_tape *tp, const int32_t *tokens,
                                      size_t nseq, size_t T, double norm, ksa_distill *d);
/* The teacher's logits alone into logits [nseq*T, V] (no tape; tests: they equal a plain
 * causal model's on the same weights). */
void ksa_model_teacher_logits(ksa_model *m, ksa_tape *tp, const int32_t *tokens, size_t nseq,
                              size_t T, ksa_tensor *logits);

/* Bytes of arena one forward + backward of nseq x T needs (an upper bound, with or without
 * m->recompute), activation gradients included; ksa_model_grad_bytes of it are those gradients,
 * which a tape with a gradient pool (tape.h) takes from the pool instead: its arena then needs the
 * difference. */
size_t ksa_model_arena_bytes(const ksa_model *m, size_t nseq, size_t T);
size_t ksa_model_grad_bytes(const ksa_model *m, size_t nseq, size_t T);

/* The memory of forward + backward passes of nseq x T: an arena of ksa_model_arena_bytes
 * less the gradients, a gradient pool of ksa_model_grad_bytes (empty when !grads: forward
 * only) and a tape of ksa_model_tape_nodes that takes its activation gradients from the
 * pool. ksa_model_tape_free releases all three.                                          */
void ksa_model_tape_init(const ksa_model *m, size_t nseq, size_t T, int grads, ksa_arena *arena,
                         ksa_grad_pool *pool, ksa_tape *tp);
void ksa_model_tape_free(ksa_arena *arena, ksa_grad_pool *pool, ksa_tape *tp);
/* What one forward + backward of nseq x T (grads: 0 for a forward only) really takes, in
 * bytes: a sizing run of the very ops of a step in the same order on a plan_only tape
 * (tape.h), which allocate and free as a step does but compute and write nothing, in sparse
 * regions -- milliseconds and a few MiB whatever T. m may be declared only
 * (ksa_model_declare); its parameters are left untouched.                                */
typedef struct {
    size_t arena_peak;       /* the arena's high-water mark, kernel scratch included */
    size_t grads_high_water; /* bytes of the gradient pool ever handed out (touched) */
    size_t grads_peak;       /* the largest set of activation gradients alive at once */
} ksa_step_memory;
ksa_step_memory ksa_model_plan(const ksa_model *m, size_t nseq, size_t T, int grads);
/* The reservation of ksa_model_arena_bytes (activation gradients included) computed in
 * floating point, for sizes whose byte counts would not fit 64 bits: a step above
 * KSA_PLANNABLE_BYTES is refused before any sizing or allocation. */
double ksa_model_step_bytes_estimate(const ksa_model *m, size_t nseq, size_t T);
#define KSA_PLANNABLE_BYTES 0x1p45 /* 32 TiB: within any 47-bit address space */

/* Tape nodes one forward records. */
size_t ksa_model_tape_nodes(const ksa_model *m);

#endif
