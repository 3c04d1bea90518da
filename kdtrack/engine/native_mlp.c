/* The native step of kdtrack's engine: a stack of M MLPs 2 -> H1 -> H2 -> 2 (ReLU; with BN=1, a batch norm
 * before each ReLU and no bias on the Linears that feed it), full batch, trained for a chunk of epochs in
 * one call. Per model and epoch: for each training batch a forward pass, the loss, the hand-derived
 * backward pass and an Adam/AdamW (AMSGrad) step; then the validation and selection passes, the history
 * row, and the best checkpoint so far. kdtrack/engine/native.py builds it (gcc -O3 -march=native), loads
 * it with ctypes and holds it to the PyTorch step it replaces (tests/test_engine.py).
 *
 * Why a kernel: at this size PyTorch spends its time dispatching operators and moving activations that do
 * not fit in L2. Here a block of 8*VB samples of one model lives in registers and L1, nothing of size N is
 * written to memory (without batch norm), and one call covers about a thousand epochs.
 *
 * The loss of a sample, with per-model, per-epoch weights (a Mix):
 *   ce * CE(z, y) + kd * KL(softmax(t * inv_t) || softmax(z * inv_t)) + mse * mean_c (z_c - scale * t_c)^2
 * for logits z, teacher logits t and label y; a model's loss is the mean over its samples (mask = 1).
 *
 * Layouts, float32: a split's x is (2, np) per model (x0 row then x1 row), y and mask (np), teacher logits
 * (2, np); np is a multiple of 8*VB, padding has mask 0; consecutive models are `*_stride` floats apart
 * (0 when they share the split). Parameters (M, K) in a single MLP's state_dict order: W1[H1][2] b1[H1]
 * W2[H2][H1] b2[H2] W3[2][H2] b3[2]; with batch norm W1 g1 be1 W2 g2 be2 W3 b3, and running statistics
 * (M, R) as mean1[H1] var1[H1] mean2[H2] var2[H2].
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef H1
#define H1 20
#endif
#ifndef H2
#define H2 10
#endif
#ifndef BN
#define BN 0
#endif
#define VB 8 /* vectors of 8 samples per block: 67 us per model-epoch at 8, 78 at 4 (benchmarks/engine_speed.py) */
#define BS (8 * VB)
#if BN
#define K_PARAMS (H1 * 2 + 2 * H1 + H2 * H1 + 2 * H2 + 2 * H2 + 2)
#else
#define K_PARAMS (H1 * 2 + H1 + H2 * H1 + H2 + 2 * H2 + 2)
#endif
#define R_RUNNING (BN ? 2 * H1 + 2 * H2 : 0)
#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f
#define HISTORY_ROWS 6 /* train_loss, train_acc, val_loss, val_acc, selection_loss, selection_acc */
enum { SELECT_LOSS, SELECT_ACCURACY, SELECT_ACCURACY_1SE }; /* trainer.SELECT_ON's criteria, by number */

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

typedef struct {
    float ce, kd, inv_t, mse, scale;
} Mix;

typedef struct {
    const float *x, *y, *mask, *teacher, *count; /* count: (M) samples of each model */
    long x_stride, y_stride, mask_stride, teacher_stride;
    int np;
} Split;

typedef struct {
    int n_models, n_epochs, first_epoch, n_fit;
    const Split *fit; /* n_fit batches, one optimizer step each per epoch */
    const Split *valid, *selection;
    int selection_is_valid; /* no holdout, and the selection loss is the validation loss */
    const float *mix, *select_mix; /* (E, M) Mix: the training (and validation) loss, the selection loss */
    const int32_t *selectable;     /* (E) 1 where a checkpoint may be selected */
    int criterion;                 /* SELECT_LOSS, SELECT_ACCURACY (the error rate, ties by the selection
                                      loss) or SELECT_ACCURACY_1SE (the latest epoch within one standard
                                      error of the least error rate) */
    const double *lr, *beta1;      /* (E * n_fit): per optimizer step */
    double beta2, eps, weight_decay;
    int decoupled, amsgrad;
    float *params, *moment1, *moment2, *moment2_max, *running;
    float *best, *best_running, *best_loss, *best_error;
    float *least_error; /* (M) the least selection error rate so far (SELECT_ACCURACY_1SE) */
    int64_t *best_epoch;
    float *history; /* (E, HISTORY_ROWS, M) */
} Job;

/* One model's view of a split. */
typedef struct {
    const float *x, *y, *mask, *teacher;
    int np;
    float inv_count;
} View;

static inline v8 vset(float a) { return (v8){a, a, a, a, a, a, a, a}; }
static inline v8 vld(const float *p) { v8 r; memcpy(&r, p, 32); return r; }
static inline void vst(float *p, v8 a) { memcpy(p, &a, 32); }
static inline v8 vmax(v8 a, v8 b) { return _mm256_max_ps(a, b); }
static inline v8 vmin(v8 a, v8 b) { return _mm256_min_ps(a, b); }
static inline v8 vrelu(v8 a) { return _mm256_max_ps(a, vset(0.f)); }
static inline v8 vsel(v8 mask, v8 a, v8 b) { return _mm256_blendv_ps(b, a, mask); } /* mask ? a : b */
static inline v8 vpositive(v8 a) { return _mm256_cmp_ps(a, vset(0.f), _CMP_GT_OQ); }
static inline float hsum(v8 a) {
    float t[8];
    memcpy(t, &a, 32);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

/* exp(x): x = k ln2 + r with |r| <= ln2/2, a degree-7 Taylor series in r (relative error < 1e-8), times 2^k. */
static inline v8 vexp(v8 x) {
    x = vmin(vmax(x, vset(-87.0f)), vset(88.0f));
    v8 k = _mm256_round_ps(x * vset(1.44269504088896341f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v8 r = x - k * vset(0.693145751953125f) - k * vset(1.42860682030941723e-6f);
    v8 p = vset(1.f / 5040.f);
    p = p * r + vset(1.f / 720.f);
    p = p * r + vset(1.f / 120.f);
    p = p * r + vset(1.f / 24.f);
    p = p * r + vset(1.f / 6.f);
    p = p * r + vset(0.5f);
    p = p * r + vset(1.f);
    p = p * r + vset(1.f);
    v8i e = (__builtin_convertvector(k, v8i) + 127) << 23;
    return p * (v8)e;
}

/* log(1 + e) for e in [0, 1], accurate when e is small (where log(1 + e) would round 1 + e first):
 * 2 atanh(s) with s = e / (2 + e) <= 1/3, the series to s^13 (truncation below 2e-8 relative). */
static inline v8 vlog1p(v8 e) {
    v8 s = e / (vset(2.f) + e), s2 = s * s;
    v8 p = vset(1.f / 13.f);
    p = p * s2 + vset(1.f / 11.f);
    p = p * s2 + vset(1.f / 9.f);
    p = p * s2 + vset(1.f / 7.f);
    p = p * s2 + vset(1.f / 5.f);
    p = p * s2 + vset(1.f / 3.f);
    p = p * s2 + vset(1.f);
    return vset(2.f) * s * p;
}

/* log(exp(a) + exp(b)) = max(a, b) + log(1 + exp(-|a - b|)). */
static inline v8 vlogsumexp(v8 a, v8 b) {
    v8 gap = a - b;
    return vmax(a, b) + vlog1p(vexp(-vmax(gap, -gap)));
}

/* The weighted loss of 8 samples (w: mask / count); with dz, its gradient with respect to the logits. */
static inline v8 mix_loss(const Mix *mix, v8 z0, v8 z1, v8 y, v8 w, const View *s, int n, v8 *dz0, v8 *dz1) {
    v8 loss = vset(0.f), g0 = vset(0.f), g1 = vset(0.f);
    if (mix->ce != 0.f) {
        /* -log softmax(z)_y = (max - z_y) + log(1 + exp(-|z1 - z0|)), exact in its first part */
        v8 top = vmax(z0, z1), gap = z1 - z0;
        v8 zy = vsel(_mm256_cmp_ps(y, vset(0.5f), _CMP_GT_OQ), z1, z0);
        v8 soft = vlog1p(vexp(-vmax(gap, -gap)));
        v8 lse = top + soft;
        loss += vset(mix->ce) * ((top - zy) + soft);
        if (dz0) {
            g0 += vset(mix->ce) * (vexp(z0 - lse) - (vset(1.f) - y));
            g1 += vset(mix->ce) * (vexp(z1 - lse) - y);
        }
    }
    if (mix->kd != 0.f || mix->mse != 0.f) {
        v8 t0 = vld(s->teacher + n), t1 = vld(s->teacher + s->np + n);
        if (mix->kd != 0.f) {
            v8 it = vset(mix->inv_t);
            v8 s0 = z0 * it, s1 = z1 * it, q0 = t0 * it, q1 = t1 * it;
            v8 lses = vlogsumexp(s0, s1), lseq = vlogsumexp(q0, q1);
            v8 ls0 = s0 - lses, ls1 = s1 - lses, lq0 = q0 - lseq, lq1 = q1 - lseq;
            v8 pq0 = vexp(lq0), pq1 = vexp(lq1);
            loss += vset(mix->kd) * (pq0 * (lq0 - ls0) + pq1 * (lq1 - ls1));
            if (dz0) {
                v8 c = vset(mix->kd * mix->inv_t);
                g0 += c * (vexp(ls0) - pq0);
                g1 += c * (vexp(ls1) - pq1);
            }
        }
        if (mix->mse != 0.f) {
            v8 a0 = z0 - vset(mix->scale) * t0, a1 = z1 - vset(mix->scale) * t1;
            loss += vset(mix->mse * 0.5f) * (a0 * a0 + a1 * a1);
            if (dz0) {
                g0 += vset(mix->mse) * a0;
                g1 += vset(mix->mse) * a1;
            }
        }
    }
    if (dz0) {
        *dz0 = w * g0;
        *dz1 = w * g1;
    }
    return w * loss;
}

/* 1 where the prediction (class 1 when z1 > z0, as argmax breaks ties) is the label, times the mask. */
static inline v8 correct(v8 z0, v8 z1, v8 y, v8 mask) {
    v8 predicted = _mm256_and_ps(_mm256_cmp_ps(z1, z0, _CMP_GT_OQ), vset(1.f));
    return mask * vsel(_mm256_cmp_ps(predicted, y, _CMP_EQ_OQ), vset(1.f), vset(0.f));
}

typedef struct {
    double loss, correct;
} Sums;

#if !BN
/* ---- without batch norm: one pass over the samples, block by block ---------------------------------- */

static inline void block_forward(const float *P, const View *s, int n, v8 h1[H1][VB], v8 h2[H2][VB], v8 z[2][VB]) {
    const float *W1 = P, *b1 = W1 + 2 * H1, *W2 = b1 + H1, *b2 = W2 + H2 * H1, *W3 = b2 + H2, *b3 = W3 + 2 * H2;
    v8 x0[VB], x1[VB];
    for (int b = 0; b < VB; b++) {
        x0[b] = vld(s->x + n + 8 * b);
        x1[b] = vld(s->x + s->np + n + 8 * b);
    }
    for (int j = 0; j < H1; j++)
        for (int b = 0; b < VB; b++) h1[j][b] = vrelu(vset(W1[2 * j]) * x0[b] + vset(W1[2 * j + 1]) * x1[b] + vset(b1[j]));
    for (int k = 0; k < H2; k++) {
        v8 acc[VB];
        for (int b = 0; b < VB; b++) acc[b] = vset(b2[k]);
        for (int j = 0; j < H1; j++)
            for (int b = 0; b < VB; b++) acc[b] += vset(W2[k * H1 + j]) * h1[j][b];
        for (int b = 0; b < VB; b++) h2[k][b] = vrelu(acc[b]);
    }
    for (int c = 0; c < 2; c++) {
        v8 acc[VB];
        for (int b = 0; b < VB; b++) acc[b] = vset(b3[c]);
        for (int k = 0; k < H2; k++)
            for (int b = 0; b < VB; b++) acc[b] += vset(W3[c * H2 + k]) * h2[k][b];
        for (int b = 0; b < VB; b++) z[c][b] = acc[b];
    }
}

/* The mean loss over a split and its gradient G with respect to the parameters. */
static Sums model_grad(const float *P, float *G, float *running, const View *s, const Mix *mix) {
    (void)running;
    const float *W2 = P + 3 * H1, *W3 = W2 + H2 * H1 + H2;
    v8 gW1[H1][2], gb1[H1], gW2[H2][H1], gb2[H2], gW3[2][H2], gb3[2];
    memset(gW1, 0, sizeof gW1); memset(gb1, 0, sizeof gb1); memset(gW2, 0, sizeof gW2);
    memset(gb2, 0, sizeof gb2); memset(gW3, 0, sizeof gW3); memset(gb3, 0, sizeof gb3);
    v8 loss = vset(0.f), hits = vset(0.f), inv_count = vset(s->inv_count);
    for (int n = 0; n < s->np; n += BS) {
        v8 h1[H1][VB], h2[H2][VB], z[2][VB], dz[2][VB], x0[VB], x1[VB];
        block_forward(P, s, n, h1, h2, z);
        for (int b = 0; b < VB; b++) {
            int at = n + 8 * b;
            v8 y = vld(s->y + at), mask = vld(s->mask + at);
            x0[b] = vld(s->x + at);
            x1[b] = vld(s->x + s->np + at);
            loss += mix_loss(mix, z[0][b], z[1][b], y, mask * inv_count, s, at, &dz[0][b], &dz[1][b]);
            hits += correct(z[0][b], z[1][b], y, mask);
        }
        for (int c = 0; c < 2; c++) {
            v8 sum = dz[c][0];
            for (int b = 1; b < VB; b++) sum += dz[c][b];
            gb3[c] += sum;
            for (int k = 0; k < H2; k++) {
                v8 a = dz[c][0] * h2[k][0];
                for (int b = 1; b < VB; b++) a += dz[c][b] * h2[k][b];
                gW3[c][k] += a;
            }
        }
        v8 d2[H2][VB];
        for (int k = 0; k < H2; k++)
            for (int b = 0; b < VB; b++) {
                v8 g = vset(W3[k]) * dz[0][b] + vset(W3[H2 + k]) * dz[1][b];
                d2[k][b] = vsel(vpositive(h2[k][b]), g, vset(0.f));
            }
        for (int k = 0; k < H2; k++) {
            v8 sum = d2[k][0];
            for (int b = 1; b < VB; b++) sum += d2[k][b];
            gb2[k] += sum;
            for (int j = 0; j < H1; j++) {
                v8 a = d2[k][0] * h1[j][0];
                for (int b = 1; b < VB; b++) a += d2[k][b] * h1[j][b];
                gW2[k][j] += a;
            }
        }
        for (int j = 0; j < H1; j++) {
            v8 d1[VB];
            for (int b = 0; b < VB; b++) {
                v8 g = vset(W2[j]) * d2[0][b];
                for (int k = 1; k < H2; k++) g += vset(W2[k * H1 + j]) * d2[k][b];
                d1[b] = vsel(vpositive(h1[j][b]), g, vset(0.f));
            }
            v8 a0 = d1[0] * x0[0], a1 = d1[0] * x1[0], sum = d1[0];
            for (int b = 1; b < VB; b++) { a0 += d1[b] * x0[b]; a1 += d1[b] * x1[b]; sum += d1[b]; }
            gW1[j][0] += a0; gW1[j][1] += a1; gb1[j] += sum;
        }
    }
    float *o = G;
    for (int j = 0; j < H1; j++) { *o++ = hsum(gW1[j][0]); *o++ = hsum(gW1[j][1]); }
    for (int j = 0; j < H1; j++) *o++ = hsum(gb1[j]);
    for (int k = 0; k < H2; k++) for (int j = 0; j < H1; j++) *o++ = hsum(gW2[k][j]);
    for (int k = 0; k < H2; k++) *o++ = hsum(gb2[k]);
    for (int c = 0; c < 2; c++) for (int k = 0; k < H2; k++) *o++ = hsum(gW3[c][k]);
    for (int c = 0; c < 2; c++) *o++ = hsum(gb3[c]);
    return (Sums){hsum(loss), hsum(hits)};
}

static Sums model_eval(const float *P, const float *running, const View *s, const Mix *mix) {
    (void)running;
    v8 loss = vset(0.f), hits = vset(0.f), inv_count = vset(s->inv_count);
    for (int n = 0; n < s->np; n += BS) {
        v8 h1[H1][VB], h2[H2][VB], z[2][VB];
        block_forward(P, s, n, h1, h2, z);
        for (int b = 0; b < VB; b++) {
            int at = n + 8 * b;
            v8 y = vld(s->y + at), mask = vld(s->mask + at);
            loss += mix_loss(mix, z[0][b], z[1][b], y, mask * inv_count, s, at, NULL, NULL);
            hits += correct(z[0][b], z[1][b], y, mask);
        }
    }
    return (Sums){hsum(loss), hsum(hits)};
}

#else
/* ---- with batch norm: statistics over each model's own samples (mask), as in a single model's training
 * step, so the passes run over all samples before normalising: five passes, with a2 and the gradients dy2,
 * dy1 kept in a scratch buffer (rows np apart). Evaluation uses the running statistics. ---------------- */

static float *scratch;
static long scratch_size;

static int reserve_scratch(int np) {
    long need = (long)(2 * H2 + H1) * np;
    if (need <= scratch_size) return 0;
    free(scratch);
    scratch = malloc(sizeof(float) * need);
    scratch_size = scratch ? need : 0;
    return scratch ? 0 : -3;
}

#define A2(k, n) scratch[(long)(k) * np + (n)]
#define DY2(k, n) scratch[(long)(H2 + (k)) * np + (n)]
#define DY1(j, n) scratch[(long)(2 * H2 + (j)) * np + (n)]

static Sums model_grad(const float *P, float *G, float *running, const View *s, const Mix *mix) {
    const float *W1 = P, *g1 = W1 + 2 * H1, *be1 = g1 + H1, *W2 = be1 + H1, *g2 = W2 + H2 * H1, *be2 = g2 + H2,
                *W3 = be2 + H2, *b3 = W3 + 2 * H2;
    float *rm1 = running, *rv1 = rm1 + H1, *rm2 = rv1 + H1, *rv2 = rm2 + H2;
    const int np = s->np;
    const float *x = s->x, *mask = s->mask;
    const float count = 1.f / s->inv_count;
    float mu1[H1], rs1[H1], mu2[H2], rs2[H2];
    v8 acc1[H1], acc2[H2];
    /* pass 1: mean, then variance (two passes, as numerically safe as PyTorch's) of a1 = W1 x */
    for (int j = 0; j < H1; j++) acc1[j] = vset(0.f);
    for (int n = 0; n < np; n += 8) {
        v8 x0 = vld(x + n), x1 = vld(x + np + n), mk = vld(mask + n);
        for (int j = 0; j < H1; j++) acc1[j] += mk * (vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1);
    }
    for (int j = 0; j < H1; j++) { mu1[j] = hsum(acc1[j]) / count; acc1[j] = vset(0.f); }
    for (int n = 0; n < np; n += 8) {
        v8 x0 = vld(x + n), x1 = vld(x + np + n), mk = vld(mask + n);
        for (int j = 0; j < H1; j++) {
            v8 d = vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1 - vset(mu1[j]);
            acc1[j] += mk * d * d;
        }
    }
    for (int j = 0; j < H1; j++) {
        float var = hsum(acc1[j]) / count;
        rs1[j] = 1.f / sqrtf(var + BN_EPS);
        rm1[j] += BN_MOMENTUM * (mu1[j] - rm1[j]);
        rv1[j] += BN_MOMENTUM * (var * count / (count - 1.f) - rv1[j]);
    }
    /* pass 2: h1, a2 (kept), mean and variance of a2 */
    for (int k = 0; k < H2; k++) acc2[k] = vset(0.f);
    for (int n = 0; n < np; n += 8) {
        v8 x0 = vld(x + n), x1 = vld(x + np + n), mk = vld(mask + n), h1[H1];
        for (int j = 0; j < H1; j++) {
            v8 a = vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1;
            h1[j] = vrelu((a - vset(mu1[j])) * vset(rs1[j] * g1[j]) + vset(be1[j]));
        }
        for (int k = 0; k < H2; k++) {
            v8 a = vset(W2[k * H1]) * h1[0];
            for (int j = 1; j < H1; j++) a += vset(W2[k * H1 + j]) * h1[j];
            vst(&A2(k, n), a);
            acc2[k] += mk * a;
        }
    }
    for (int k = 0; k < H2; k++) { mu2[k] = hsum(acc2[k]) / count; acc2[k] = vset(0.f); }
    for (int n = 0; n < np; n += 8) {
        v8 mk = vld(mask + n);
        for (int k = 0; k < H2; k++) { v8 d = vld(&A2(k, n)) - vset(mu2[k]); acc2[k] += mk * d * d; }
    }
    for (int k = 0; k < H2; k++) {
        float var = hsum(acc2[k]) / count;
        rs2[k] = 1.f / sqrtf(var + BN_EPS);
        rm2[k] += BN_MOMENTUM * (mu2[k] - rm2[k]);
        rv2[k] += BN_MOMENTUM * (var * count / (count - 1.f) - rv2[k]);
    }
    /* pass 3: the rest of the forward pass, the loss, layer 3's gradient, dy2 and its batch sums */
    v8 gW3[2][H2], gb3[2], db2[H2], dg2[H2], loss = vset(0.f), hits = vset(0.f), inv_count = vset(s->inv_count);
    memset(gW3, 0, sizeof gW3); memset(gb3, 0, sizeof gb3); memset(db2, 0, sizeof db2); memset(dg2, 0, sizeof dg2);
    for (int n = 0; n < np; n += 8) {
        v8 mk = vld(mask + n), y = vld(s->y + n), h2[H2], xh2[H2], z[2], dz0, dz1;
        for (int k = 0; k < H2; k++) {
            xh2[k] = (vld(&A2(k, n)) - vset(mu2[k])) * vset(rs2[k]);
            h2[k] = vrelu(xh2[k] * vset(g2[k]) + vset(be2[k]));
        }
        for (int c = 0; c < 2; c++) {
            v8 a = vset(b3[c]);
            for (int k = 0; k < H2; k++) a += vset(W3[c * H2 + k]) * h2[k];
            z[c] = a;
        }
        loss += mix_loss(mix, z[0], z[1], y, mk * inv_count, s, n, &dz0, &dz1);
        hits += correct(z[0], z[1], y, mk);
        gb3[0] += dz0; gb3[1] += dz1;
        for (int k = 0; k < H2; k++) {
            gW3[0][k] += dz0 * h2[k]; gW3[1][k] += dz1 * h2[k];
            v8 dy = vsel(vpositive(h2[k]), vset(W3[k]) * dz0 + vset(W3[H2 + k]) * dz1, vset(0.f));
            vst(&DY2(k, n), dy);
            db2[k] += dy; dg2[k] += dy * xh2[k];
        }
    }
    float DB2[H2], DG2[H2];
    for (int k = 0; k < H2; k++) { DB2[k] = hsum(db2[k]); DG2[k] = hsum(dg2[k]); }
    /* pass 4: through batch norm 2 to a2's gradient; W2's gradient; dy1 and its batch sums */
    v8 gW2[H2][H1], db1[H1], dg1[H1];
    memset(gW2, 0, sizeof gW2); memset(db1, 0, sizeof db1); memset(dg1, 0, sizeof dg1);
    for (int n = 0; n < np; n += 8) {
        v8 x0 = vld(x + n), x1 = vld(x + np + n), mk = vld(mask + n), h1[H1], xh1[H1], da2[H2];
        for (int j = 0; j < H1; j++) {
            xh1[j] = (vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1 - vset(mu1[j])) * vset(rs1[j]);
            h1[j] = vrelu(xh1[j] * vset(g1[j]) + vset(be1[j]));
        }
        for (int k = 0; k < H2; k++) {
            v8 xh2 = (vld(&A2(k, n)) - vset(mu2[k])) * vset(rs2[k]);
            da2[k] = mk * vset(g2[k] * rs2[k]) * (vld(&DY2(k, n)) - vset(DB2[k] / count) - xh2 * vset(DG2[k] / count));
            for (int j = 0; j < H1; j++) gW2[k][j] += da2[k] * h1[j];
        }
        for (int j = 0; j < H1; j++) {
            v8 g = vset(W2[j]) * da2[0];
            for (int k = 1; k < H2; k++) g += vset(W2[k * H1 + j]) * da2[k];
            v8 dy = vsel(vpositive(h1[j]), g, vset(0.f));
            vst(&DY1(j, n), dy);
            db1[j] += dy; dg1[j] += dy * xh1[j];
        }
    }
    float DB1[H1], DG1[H1];
    for (int j = 0; j < H1; j++) { DB1[j] = hsum(db1[j]); DG1[j] = hsum(dg1[j]); }
    /* pass 5: through batch norm 1 to a1's gradient; W1's gradient */
    v8 gW1[H1][2];
    memset(gW1, 0, sizeof gW1);
    for (int n = 0; n < np; n += 8) {
        v8 x0 = vld(x + n), x1 = vld(x + np + n), mk = vld(mask + n);
        for (int j = 0; j < H1; j++) {
            v8 xh1 = (vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1 - vset(mu1[j])) * vset(rs1[j]);
            v8 da1 = mk * vset(g1[j] * rs1[j]) * (vld(&DY1(j, n)) - vset(DB1[j] / count) - xh1 * vset(DG1[j] / count));
            gW1[j][0] += da1 * x0; gW1[j][1] += da1 * x1;
        }
    }
    float *o = G;
    for (int j = 0; j < H1; j++) { *o++ = hsum(gW1[j][0]); *o++ = hsum(gW1[j][1]); }
    for (int j = 0; j < H1; j++) *o++ = DG1[j];
    for (int j = 0; j < H1; j++) *o++ = DB1[j];
    for (int k = 0; k < H2; k++) for (int j = 0; j < H1; j++) *o++ = hsum(gW2[k][j]);
    for (int k = 0; k < H2; k++) *o++ = DG2[k];
    for (int k = 0; k < H2; k++) *o++ = DB2[k];
    for (int c = 0; c < 2; c++) for (int k = 0; k < H2; k++) *o++ = hsum(gW3[c][k]);
    for (int c = 0; c < 2; c++) *o++ = hsum(gb3[c]);
    return (Sums){hsum(loss), hsum(hits)};
}

static Sums model_eval(const float *P, const float *running, const View *s, const Mix *mix) {
    const float *W1 = P, *g1 = W1 + 2 * H1, *be1 = g1 + H1, *W2 = be1 + H1, *g2 = W2 + H2 * H1, *be2 = g2 + H2,
                *W3 = be2 + H2, *b3 = W3 + 2 * H2;
    const float *rm1 = running, *rv1 = rm1 + H1, *rm2 = rv1 + H1, *rv2 = rm2 + H2;
    float s1[H1], t1[H1], s2[H2], t2[H2];
    for (int j = 0; j < H1; j++) { s1[j] = g1[j] / sqrtf(rv1[j] + BN_EPS); t1[j] = be1[j] - rm1[j] * s1[j]; }
    for (int k = 0; k < H2; k++) { s2[k] = g2[k] / sqrtf(rv2[k] + BN_EPS); t2[k] = be2[k] - rm2[k] * s2[k]; }
    v8 loss = vset(0.f), hits = vset(0.f), inv_count = vset(s->inv_count);
    for (int n = 0; n < s->np; n += 8) {
        v8 x0 = vld(s->x + n), x1 = vld(s->x + s->np + n), h1[H1], h2[H2], z[2];
        for (int j = 0; j < H1; j++)
            h1[j] = vrelu((vset(W1[2 * j]) * x0 + vset(W1[2 * j + 1]) * x1) * vset(s1[j]) + vset(t1[j]));
        for (int k = 0; k < H2; k++) {
            v8 a = vset(W2[k * H1]) * h1[0];
            for (int j = 1; j < H1; j++) a += vset(W2[k * H1 + j]) * h1[j];
            h2[k] = vrelu(a * vset(s2[k]) + vset(t2[k]));
        }
        for (int c = 0; c < 2; c++) {
            v8 a = vset(b3[c]);
            for (int k = 0; k < H2; k++) a += vset(W3[c * H2 + k]) * h2[k];
            z[c] = a;
        }
        v8 y = vld(s->y + n), mk = vld(s->mask + n);
        loss += mix_loss(mix, z[0], z[1], y, mk * inv_count, s, n, NULL, NULL);
        hits += correct(z[0], z[1], y, mk);
    }
    return (Sums){hsum(loss), hsum(hits)};
}
#endif

/* torch.optim.Adam / AdamW, single-tensor: float32 arithmetic with the scalars computed as torch does. */
static void adam(float *p, const float *grad, float *m, float *v, float *v_max, int step, double lr, double beta1,
                 const Job *job) {
    double bias1 = 1.0 - pow(beta1, step), bias2 = 1.0 - pow(job->beta2, step);
    float neg_step = (float)(-(lr / bias1)), bias2_sqrt = (float)sqrt(bias2), eps = (float)job->eps;
    float wd = (float)job->weight_decay, one_b1 = (float)(1.0 - beta1), one_b2 = (float)(1.0 - job->beta2);
    float b2 = (float)job->beta2, decay = (float)(1.0 - lr * job->weight_decay);
    for (int i = 0; i < K_PARAMS; i++) {
        float g = grad[i];
        if (job->weight_decay != 0.0) {
            if (job->decoupled) p[i] *= decay;
            else g += wd * p[i];
        }
        m[i] += one_b1 * (g - m[i]);
        v[i] *= b2;
        v[i] += one_b2 * g * g;
        float second = v[i];
        if (job->amsgrad) {
            if (v_max[i] < second) v_max[i] = second;
            second = v_max[i];
        }
        p[i] += (neg_step * m[i]) / (sqrtf(second) / bias2_sqrt + eps);
    }
}

static View view(const Split *s, int model) {
    return (View){s->x + model * s->x_stride, s->y + model * s->y_stride, s->mask + model * s->mask_stride,
                  s->teacher ? s->teacher + model * s->teacher_stride : NULL, s->np, 1.f / s->count[model]};
}

/* The standard error of an accuracy measured on n samples, at error rate `error`. */
static float standard_error(float error, float n) { return sqrtf(error * (1.f - error) / n); }

int train_epochs(const Job *job) {
    const int M = job->n_models;
    for (int b = 0; b < job->n_fit; b++)
        if (job->fit[b].np % BS) return -1;
    if (job->valid->np % BS || job->selection->np % BS) return -1;
#if BN
    int widest = 0;
    for (int b = 0; b < job->n_fit; b++) widest = job->fit[b].np > widest ? job->fit[b].np : widest;
    if (reserve_scratch(widest)) return -3;
#endif
    /* Flush denormals to zero: the tiny gradients of a converged model would otherwise slow every
     * operation late in a long run. The caller's floating-point state is restored on return. */
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
    float grad[K_PARAMS];
    for (int mdl = 0; mdl < M; mdl++) {
        float *p = job->params + (long)mdl * K_PARAMS, *running = job->running + (long)mdl * R_RUNNING;
        long at = (long)mdl * K_PARAMS;
        View valid = view(job->valid, mdl), selection = view(job->selection, mdl);
        for (int e = 0; e < job->n_epochs; e++) {
            const Mix *mix = (const Mix *)(job->mix + ((long)e * M + mdl) * 5);
            const Mix *select_mix = (const Mix *)(job->select_mix + ((long)e * M + mdl) * 5);
            float *row = job->history + (long)e * HISTORY_ROWS * M + mdl;
            double loss = 0.0, hits = 0.0, count = 0.0;
            for (int b = 0; b < job->n_fit; b++) {
                View fit = view(&job->fit[b], mdl);
                Sums sums = model_grad(p, grad, running, &fit, mix);
                float samples = job->fit[b].count[mdl];
                loss += sums.loss * samples;
                hits += sums.correct;
                count += samples;
                long step = (long)(job->first_epoch + e) * job->n_fit + b;
                adam(p, grad, job->moment1 + at, job->moment2 + at, job->amsgrad ? job->moment2_max + at : NULL,
                     (int)(step + 1), job->lr[(long)e * job->n_fit + b], job->beta1[(long)e * job->n_fit + b], job);
            }
            row[0] = (float)(loss / count);
            row[M] = (float)(hits / count);
            Sums checked = model_eval(p, running, &valid, mix);
            row[2 * M] = (float)checked.loss;
            row[3 * M] = (float)(checked.correct / job->valid->count[mdl]);
            float selection_loss = INFINITY, selection_error = INFINITY;
            row[5 * M] = NAN;
            if (job->selectable[e]) {
                if (!job->selection_is_valid) checked = model_eval(p, running, &selection, select_mix);
                selection_loss = (float)checked.loss;
                row[5 * M] = (float)(checked.correct / job->selection->count[mdl]);
                selection_error = 1.f - row[5 * M];
            }
            row[4 * M] = selection_loss;
            int improved;
            if (job->criterion == SELECT_ACCURACY_1SE) {
                job->least_error[mdl] = fminf(job->least_error[mdl], selection_error);
                improved = selection_error <= job->least_error[mdl] +
                                                  standard_error(job->least_error[mdl], job->selection->count[mdl]);
            } else if (job->criterion == SELECT_ACCURACY) {
                improved = selection_error < job->best_error[mdl] ||
                           (selection_error == job->best_error[mdl] && selection_loss < job->best_loss[mdl]);
            } else {
                improved = selection_loss < job->best_loss[mdl];
            }
            if (improved) {
                job->best_loss[mdl] = selection_loss;
                job->best_error[mdl] = selection_error;
                job->best_epoch[mdl] = job->first_epoch + e + 1;
                memcpy(job->best + at, p, sizeof(float) * K_PARAMS);
                memcpy(job->best_running + (long)mdl * R_RUNNING, running, sizeof(float) * R_RUNNING);
            }
        }
    }
    _mm_setcsr(csr);
    return 0;
}

int parameter_count(void) { return K_PARAMS; }
int block_size(void) { return BS; }
