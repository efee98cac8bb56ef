/* Bilinear resampling of one RGB frame, with Pillow's own integer arithmetic.
 *
 * transforms/resample.py builds this file on first use and calls it through ctypes. It
 * computes what Pillow's Image.resize(..., BILINEAR) computes for an 8-bit RGB image
 * (libImaging/Resample.c): one pass along each axis, the first pass's result rounded to
 * uint8; each output value is (2^21 + sum of pixel * weight) >> 22 clamped to 0..255,
 * with the 22-bit integer weights that resample.py derives the way Pillow does. Pillow
 * runs the horizontal pass first, except (since 13.0) when the height shrinks much more
 * than the width; `vertical_first` chooses, and resample.py finds out which order the
 * installed Pillow takes.
 *
 * Only the memory layout differs from Pillow's, so that every inner loop runs over
 * contiguous memory and the compiler vectorises it: a pass sums whole rows (all pixels,
 * 4 bytes R G B X each, at once), so a pass along the columns works on a transposed copy.
 * Integer sums are exact and their order does not change them, so the values are
 * Pillow's to the bit (tests/test_resample.py compares them on many sizes and crops).
 */
#include <stddef.h>
#include <stdint.h>

#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))
#define TILE 8

static inline int32_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

/* out[x][y] = in[y][x] for a rows x cols block of 4-byte pixels (in: stride pixels per
 * row), through TILE x TILE tiles whose fixed size lets the compiler use registers. */
static void transpose(const uint32_t *restrict in, ptrdiff_t stride, int rows, int cols,
                      uint32_t *restrict out) {
    int yf = rows - rows % TILE, xf = cols - cols % TILE;
    for (int yb = 0; yb < yf; yb += TILE)
        for (int xb = 0; xb < xf; xb += TILE) {
            uint32_t t[TILE][TILE];
            for (int y = 0; y < TILE; y++)
                for (int x = 0; x < TILE; x++)
                    t[x][y] = in[(ptrdiff_t)(yb + y) * stride + xb + x];
            for (int x = 0; x < TILE; x++)
                for (int y = 0; y < TILE; y++)
                    out[(size_t)(xb + x) * rows + yb + y] = t[x][y];
        }
    for (int y = 0; y < rows; y++)  /* the edges that fill no whole tile */
        for (int x = y < yf ? xf : 0; x < cols; x++)
            out[(size_t)x * rows + y] = in[(ptrdiff_t)y * stride + x];
}

/* Output sample i of a pass whose input samples are rows of len bytes, row_stride bytes
 * apart: out[j] = clip8(HALF + sum_t rows[first + t][j] * w[t]). Up to 6 taps (every
 * downscale by less than 2.5, every upscale) the sum stays in registers; acc: len ints. */
static void weighted_rows(const uint8_t *restrict rows, ptrdiff_t row_stride, int len,
                          const int32_t *restrict bounds, const int32_t *restrict weights,
                          int ksize, int i, int32_t *restrict acc, uint8_t *restrict out) {
    int taps = bounds[2 * i + 1];
    const uint8_t *r = rows + (ptrdiff_t)bounds[2 * i] * row_stride;
    const int32_t *w = weights + (size_t)i * ksize;
#define TAP(t) + (int32_t)r[(t) * row_stride + j] * w[t]
#define SUM(n, taps_)                                                   \
    case n:                                                             \
        for (int j = 0; j < len; j++)                                   \
            out[j] = (uint8_t)clip8(HALF taps_);                        \
        return;
    switch (taps) {
        SUM(1, TAP(0))
        SUM(2, TAP(0) TAP(1))
        SUM(3, TAP(0) TAP(1) TAP(2))
        SUM(4, TAP(0) TAP(1) TAP(2) TAP(3))
        SUM(5, TAP(0) TAP(1) TAP(2) TAP(3) TAP(4))
        SUM(6, TAP(0) TAP(1) TAP(2) TAP(3) TAP(4) TAP(5))
    }
#undef SUM
#undef TAP
    for (int j = 0; j < len; j++)
        acc[j] = HALF;
    for (int t = 0; t < taps; t++) {
        const uint8_t *q = r + (ptrdiff_t)t * row_stride;
        int32_t k = w[t];
        for (int j = 0; j < len; j++)
            acc[j] += (int32_t)q[j] * k;
    }
    for (int j = 0; j < len; j++)
        out[j] = (uint8_t)clip8(acc[j]);
}

/* A pass along the columns: out[k][.] (k < n) from the columns of a rows x cols block
 * (stride pixels per row), by way of tr (cols x rows) and out_t (n x rows). */
static void column_pass(const uint32_t *block, ptrdiff_t stride, int rows, int cols, int n,
                        const int32_t *bounds, const int32_t *weights, int ksize,
                        uint32_t *tr, uint32_t *out_t, int32_t *acc, uint32_t *out) {
    transpose(block, stride, rows, cols, tr);
    for (int k = 0; k < n; k++)
        weighted_rows((const uint8_t *)tr, 4 * (ptrdiff_t)rows, 4 * rows, bounds, weights,
                      ksize, k, acc, (uint8_t *)(out_t + (size_t)k * rows));
    transpose(out_t, rows, n, rows, out);
}

static int larger(int a, int b) { return a > b ? a : b; }

/* What resample_rgbx does to every frame of one geometry (transforms/resample.py's
 * _Plan mirrors it field by field). The block of the source read is columns
 * [x0, x0 + nx) and rows [y0, y0 + ny). Output column xx sums hb[2xx+1] taps from block
 * column hb[2xx] with weights hk[xx * hks + t]; output row yy likewise from block rows,
 * with vb, vk, vks. */
struct plan {
    ptrdiff_t src_stride;  /* source pixels per row */
    int x0, nx, y0, ny, ow, oh, hks, vks, vertical_first;
    const int32_t *hb, *hk, *vb, *vk;
};

/* Scratch size, in 4-byte words, of resample_rgbx with this plan. */
size_t resample_work_words(const struct plan *p) {
    if (p->vertical_first)
        return 2 * (size_t)p->oh * p->nx + 2 * (size_t)p->oh * p->ow
               + 4 * (size_t)larger(p->nx, p->oh);
    return (size_t)p->nx * p->ny + 2 * (size_t)p->ny * p->ow + (size_t)p->oh * p->ow
           + 4 * (size_t)larger(p->ny, p->ow);
}

/* src: RGBX pixels, p->src_stride per row. Channel c of output pixel (yy, xx) goes to
 * dst[c * dst_c + yy * dst_y + xx]. work: resample_work_words(p) words. */
void resample_rgbx(const struct plan *p, const uint32_t *src, uint8_t *dst, ptrdiff_t dst_c,
                   ptrdiff_t dst_y, uint32_t *work) {
    const uint32_t *block = src + (ptrdiff_t)p->y0 * p->src_stride + p->x0;
    int nx = p->nx, ny = p->ny, ow = p->ow, oh = p->oh;
    uint32_t *out;  /* [oh][ow] RGBX */
    if (!p->vertical_first) {
        uint32_t *tr = work, *hp_t = tr + (size_t)nx * ny, *hp = hp_t + (size_t)ny * ow;
        out = hp + (size_t)ny * ow;
        int32_t *acc = (int32_t *)(out + (size_t)oh * ow);
        column_pass(block, p->src_stride, ny, nx, ow, p->hb, p->hk, p->hks, tr, hp_t, acc, hp);
        for (int yy = 0; yy < oh; yy++)
            weighted_rows((const uint8_t *)hp, 4 * (ptrdiff_t)ow, 4 * ow, p->vb, p->vk, p->vks,
                          yy, acc, (uint8_t *)(out + (size_t)yy * ow));
    } else {
        uint32_t *vp = work, *tr = vp + (size_t)oh * nx, *out_t = tr + (size_t)nx * oh;
        out = out_t + (size_t)ow * oh;
        int32_t *acc = (int32_t *)(out + (size_t)oh * ow);
        for (int yy = 0; yy < oh; yy++)
            weighted_rows((const uint8_t *)block, 4 * p->src_stride, 4 * nx, p->vb, p->vk,
                          p->vks, yy, acc, (uint8_t *)(vp + (size_t)yy * nx));
        column_pass(vp, nx, oh, nx, ow, p->hb, p->hk, p->hks, tr, out_t, acc, out);
    }
    for (int yy = 0; yy < oh; yy++) {  /* R G B X rows -> three planes */
        const uint8_t *row = (const uint8_t *)(out + (size_t)yy * ow);
        for (int c = 0; c < 3; c++) {
            uint8_t *d = dst + c * dst_c + yy * dst_y;
            for (int xx = 0; xx < ow; xx++)
                d[xx] = row[4 * xx + c];
        }
    }
}
