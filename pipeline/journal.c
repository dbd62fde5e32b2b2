/*
 * Per-rank journals: RESULTS/journal/rank-N.
 *
 * File   = header record, then one record per finished unit.
 * Record = u32 magic "SBRJ" | u32 payload length | payload | u32 CRC32(payload)
 *          (little-endian; CRC32 is zlib's).
 * Header payload: "sambench-journal-1" + u64 run fingerprint (a hash of the
 * options that change results; --resume refuses a journal of another run).
 * Unit payload: dataset, case (strings: u32 length + bytes), u32 number of
 * records, u32 number of batches, then the fields of each record / batch in
 * a fixed order (integers little-endian, doubles as IEEE-754 bits).
 *
 * Each append is written with one fwrite, fflush'd and fsync'd, so SIGKILL
 * leaves at most one torn record at the tail; readers stop at the first
 * record whose magic, length or CRC is wrong, and --resume truncates the
 * file there before appending.
 */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define REC_MAGIC 0x4a524253u /* "SBRJ" little-endian */
#define HDR_TAG "sambench-journal-1"
#define MAX_PAYLOAD (1u << 30)

uint32_t sb_crc32(const void *data, size_t len) { return sb_crc32_update(0, data, len); }

/* ---- byte buffer ------------------------------------------------------------ */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *x, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n)
            nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put_u64(buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_f64(buf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    put_u64(b, u);
}
static void put_f32(buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}
static void put_str(buf *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    put_u32(b, n);
    put(b, s, n);
}

typedef struct {
    const uint8_t *p;
    size_t n, at;
    int bad;
} rd;
static uint32_t get_u32(rd *r)
{
    if (r->at + 4 > r->n) {
        r->bad = 1;
        return 0;
    }
    const uint8_t *x = r->p + r->at;
    r->at += 4;
    return (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
}
static uint64_t get_u64(rd *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}
static double get_f64(rd *r)
{
    uint64_t u = get_u64(r);
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static float get_f32(rd *r)
{
    uint32_t u = get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void get_str(rd *r, char *out, size_t cap)
{
    uint32_t n = get_u32(r);
    if (r->bad || n >= cap || r->at + n > r->n) {
        r->bad = 1;
        out[0] = '\0';
        return;
    }
    memcpy(out, r->p + r->at, n);
    out[n] = '\0';
    r->at += n;
}

static void put_rec(buf *b, const sb_rec *x)
{
    put_str(b, x->dataset);
    put_str(b, x->task);
    put_str(b, x->modality);
    put_str(b, x->case_id);
    put_u32(b, (uint32_t)x->slice);
    put_u32(b, (uint32_t)x->status);
    put_u32(b, (uint32_t)x->height);
    put_u32(b, (uint32_t)x->width);
    put_u32(b, (uint32_t)x->batch);
    put_u32(b, (uint32_t)x->nslices);
    for (int i = 0; i < 4; i++)
        put_f32(b, x->box[i]);
    put_u64(b, (uint64_t)x->gt);
    put_u64(b, (uint64_t)x->pred);
    put_u64(b, (uint64_t)x->tp);
    put_u64(b, (uint64_t)x->fp);
    put_u64(b, (uint64_t)x->fn);
    put_f64(b, x->surf_gt);
    put_f64(b, x->surf_pred);
    put_f64(b, x->surf_gt_in);
    put_f64(b, x->surf_pred_in);
    put_f64(b, x->seconds);
    put_str(b, x->reason);
}

static void get_rec(rd *r, sb_rec *x)
{
    memset(x, 0, sizeof *x);
    get_str(r, x->dataset, sizeof x->dataset);
    get_str(r, x->task, sizeof x->task);
    get_str(r, x->modality, sizeof x->modality);
    get_str(r, x->case_id, sizeof x->case_id);
    x->slice = (int32_t)get_u32(r);
    x->status = (int32_t)get_u32(r);
    x->height = (int32_t)get_u32(r);
    x->width = (int32_t)get_u32(r);
    x->batch = (int32_t)get_u32(r);
    x->nslices = (int32_t)get_u32(r);
    for (int i = 0; i < 4; i++)
        x->box[i] = get_f32(r);
    x->gt = (int64_t)get_u64(r);
    x->pred = (int64_t)get_u64(r);
    x->tp = (int64_t)get_u64(r);
    x->fp = (int64_t)get_u64(r);
    x->fn = (int64_t)get_u64(r);
    x->surf_gt = get_f64(r);
    x->surf_pred = get_f64(r);
    x->surf_gt_in = get_f64(r);
    x->surf_pred_in = get_f64(r);
    x->seconds = get_f64(r);
    get_str(r, x->reason, sizeof x->reason);
}

static void put_batch(buf *b, const sb_batch_rec *x)
{
    put_str(b, x->dataset);
    put_u32(b, (uint32_t)x->batch);
    put_str(b, x->cases);
    put_u64(b, (uint64_t)x->inter);
    put_u64(b, (uint64_t)x->uni);
    put_f64(b, x->iou);
    put_f64(b, x->dice);
}

static void get_batch(rd *r, sb_batch_rec *x)
{
    memset(x, 0, sizeof *x);
    get_str(r, x->dataset, sizeof x->dataset);
    x->batch = (int32_t)get_u32(r);
    get_str(r, x->cases, sizeof x->cases);
    x->inter = (int64_t)get_u64(r);
    x->uni = (int64_t)get_u64(r);
    x->iou = get_f64(r);
    x->dice = get_f64(r);
}

/* framed record into out (header + payload + crc) */
static void frame(buf *out, const buf *payload)
{
    put_u32(out, REC_MAGIC);
    put_u32(out, (uint32_t)payload->n);
    put(out, payload->p, payload->n);
    put_u32(out, sb_crc32(payload->p, payload->n));
}

/* ---- reading ------------------------------------------------------------------ */
/* Calls fn for every valid record payload; returns the byte offset after the last
 * valid record and sets *torn when bytes follow it. */
typedef int (*payload_fn)(void *arg, const uint8_t *p, size_t n);

static int scan(FILE *f, payload_fn fn, void *arg, long *valid_end, int *torn)
{
    *valid_end = 0;
    *torn = 0;
    uint8_t hdr[8];
    uint8_t *p = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        size_t got = fread(hdr, 1, 8, f);
        if (got == 0)
            break;
        if (got < 8) {
            *torn = 1;
            break;
        }
        uint32_t magic = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
        uint32_t len = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 | (uint32_t)hdr[7] << 24;
        if (magic != REC_MAGIC || len > MAX_PAYLOAD) {
            *torn = 1;
            break;
        }
        if (len + 4 > cap) {
            uint8_t *np = realloc(p, len + 4);
            if (!np) {
                rc = -1;
                break;
            }
            p = np;
            cap = len + 4;
        }
        if (fread(p, 1, len + 4, f) != len + 4) {
            *torn = 1;
            break;
        }
        uint32_t crc = (uint32_t)p[len] | (uint32_t)p[len + 1] << 8 | (uint32_t)p[len + 2] << 16 |
                       (uint32_t)p[len + 3] << 24;
        if (crc != sb_crc32(p, len)) {
            *torn = 1;
            break;
        }
        int r = fn(arg, p, len);
        if (r < 0) {
            *torn = 1;
            break;
        }
        *valid_end += 8 + (long)len + 4;
    }
    free(p);
    return rc;
}

typedef struct {
    uint64_t fp;
    int seen_header;
    int mismatch;
    sb_recs *recs;
    sb_batches *b;
    char ***keys;
    size_t *nkeys, kcap;
    int oom;
} read_ctx;

static int on_payload(void *arg, const uint8_t *p, size_t n)
{
    read_ctx *c = arg;
    rd r = {p, n, 0, 0};
    if (!c->seen_header) {
        char tag[64];
        get_str(&r, tag, sizeof tag);
        uint64_t fp = get_u64(&r);
        if (r.bad || strcmp(tag, HDR_TAG) != 0)
            return -1;
        if (fp != c->fp) {
            c->mismatch = 1;
            return -1;
        }
        c->seen_header = 1;
        return 0;
    }
    char ds[SB_NAME_MAX], cs[SB_CASE_MAX];
    get_str(&r, ds, sizeof ds);
    get_str(&r, cs, sizeof cs);
    uint32_t nr = get_u32(&r), nb = get_u32(&r);
    if (r.bad || nr > n || nb > n)
        return -1;
    size_t r0 = c->recs ? c->recs->n : 0, b0 = c->b ? c->b->n : 0;
    for (uint32_t i = 0; i < nr; i++) {
        sb_rec tmp;
        get_rec(&r, &tmp);
        if (r.bad)
            break;
        if (c->recs) {
            sb_rec *x = sb_recs_push(c->recs);
            if (!x) {
                c->oom = 1;
                return -1;
            }
            *x = tmp;
        }
    }
    for (uint32_t i = 0; i < nb && !r.bad; i++) {
        sb_batch_rec tmp;
        get_batch(&r, &tmp);
        if (r.bad)
            break;
        if (c->b) {
            sb_batch_rec *x = sb_batches_push(c->b);
            if (!x) {
                c->oom = 1;
                return -1;
            }
            *x = tmp;
        }
    }
    if (r.bad || r.at != n) { /* a valid CRC over a malformed payload: treat as torn */
        if (c->recs)
            c->recs->n = r0;
        if (c->b)
            c->b->n = b0;
        return -1;
    }
    if (c->keys) {
        if (*c->nkeys == c->kcap) {
            size_t nc = c->kcap ? 2 * c->kcap : 64;
            char **nk = realloc(*c->keys, sizeof(char *) * nc);
            if (!nk) {
                c->oom = 1;
                return -1;
            }
            *c->keys = nk;
            c->kcap = nc;
        }
        size_t l = strlen(ds) + strlen(cs) + 2;
        char *k = malloc(l);
        if (!k) {
            c->oom = 1;
            return -1;
        }
        snprintf(k, l, "%s\t%s", ds, cs);
        (*c->keys)[(*c->nkeys)++] = k;
    }
    return 0;
}

int sb_journal_read(const char *path, uint64_t fingerprint, sb_recs *recs, sb_batches *b, char ***keys,
                    size_t *nkeys, size_t *torn, sb_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open journal: %s", path, strerror(errno));
    read_ctx c = {fingerprint, 0, 0, recs, b, keys, nkeys, 0, 0};
    size_t dummy = 0;
    if (keys && !nkeys)
        c.nkeys = &dummy;
    if (keys && *c.nkeys)
        c.kcap = *c.nkeys; /* appending to an existing array: grow from its size */
    long end = 0;
    int t = 0;
    int rc = scan(f, on_payload, &c, &end, &t);
    fclose(f);
    if (rc || c.oom)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
    if (c.mismatch)
        return sb_fail(err, SB_EINVAL,
                       "%s: journal of a run with other options (model, data or protocol differ); "
                       "use a new --out or drop --resume",
                       path);
    if (torn)
        *torn += (size_t)t;
    return SB_OK;
}

/* ---- writing ------------------------------------------------------------------ */
struct sb_journal {
    FILE *f;
    char path[4096];
};

static int write_all(sb_journal *j, const buf *b, sb_error *err)
{
    if (fwrite(b->p, 1, b->n, j->f) != b->n || fflush(j->f) != 0 || fsync(fileno(j->f)) != 0)
        return sb_fail(err, SB_EIO, "%s: cannot write journal: %s", j->path, strerror(errno));
    return SB_OK;
}

static int noop_payload(void *arg, const uint8_t *p, size_t n)
{
    (void)p;
    (void)n;
    (void)arg;
    return 0;
}

int sb_journal_open(sb_journal **out, const char *path, int resume, uint64_t fingerprint, sb_error *err)
{
    *out = NULL;
    sb_journal *j = calloc(1, sizeof *j);
    if (!j)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    snprintf(j->path, sizeof j->path, "%s", path);
    long keep = 0;
    if (resume) {
        FILE *r = fopen(path, "rb");
        if (r) {
            int t = 0;
            scan(r, noop_payload, NULL, &keep, &t);
            fclose(r);
        }
    }
    if (keep > 0) {
        if (truncate(path, keep) != 0) {
            free(j);
            return sb_fail(err, SB_EIO, "%s: cannot truncate the torn tail: %s", path, strerror(errno));
        }
        j->f = fopen(path, "ab");
    } else {
        j->f = fopen(path, "wb");
    }
    if (!j->f) {
        int e = errno;
        free(j);
        return sb_fail(err, SB_EIO, "%s: cannot open journal for writing: %s", path, strerror(e));
    }
    if (keep == 0) {
        buf p = {0}, o = {0};
        put_str(&p, HDR_TAG);
        put_u64(&p, fingerprint);
        frame(&o, &p);
        int rc = p.oom || o.oom ? sb_fail(err, SB_ENOMEM, "out of memory") : write_all(j, &o, err);
        free(p.p);
        free(o.p);
        if (rc) {
            fclose(j->f);
            free(j);
            return rc;
        }
    }
    *out = j;
    return SB_OK;
}

int sb_journal_append(sb_journal *j, const char *dataset, const char *case_id, const sb_rec *recs,
                      size_t nrecs, const sb_batch_rec *b, size_t nb, sb_error *err)
{
    buf p = {0}, o = {0};
    put_str(&p, dataset);
    put_str(&p, case_id);
    put_u32(&p, (uint32_t)nrecs);
    put_u32(&p, (uint32_t)nb);
    for (size_t i = 0; i < nrecs; i++)
        put_rec(&p, &recs[i]);
    for (size_t i = 0; i < nb; i++)
        put_batch(&p, &b[i]);
    int rc;
    if (p.n > MAX_PAYLOAD)
        rc = sb_fail(err, SB_ENOMEM, "%s: unit record too large (%zu bytes)", j->path, p.n);
    else {
        frame(&o, &p);
        rc = p.oom || o.oom ? sb_fail(err, SB_ENOMEM, "out of memory") : write_all(j, &o, err);
    }
    free(p.p);
    free(o.p);
    return rc;
}

void sb_journal_close(sb_journal *j)
{
    if (!j)
        return;
    if (j->f)
        fclose(j->f);
    free(j);
}
