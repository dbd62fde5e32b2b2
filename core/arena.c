/* Bump allocator for forward-pass activations (see sambench.h). */
#include "sambench.h"

#include <stdlib.h>

#define SB_ARENA_ALIGN 64

struct sb_arena {
    unsigned char *base; /* NULL for a measuring arena */
    size_t capacity;     /* 0 for a measuring arena */
    size_t used;
    size_t peak;
};

static size_t align_up(size_t n) { return (n + SB_ARENA_ALIGN - 1) & ~(size_t)(SB_ARENA_ALIGN - 1); }

int sb_arena_create(sb_arena **out, size_t capacity, sb_error *err)
{
    *out = NULL;
    sb_arena *a = calloc(1, sizeof *a);
    if (!a)
        return sb_fail(err, SB_ENOMEM, "arena: cannot allocate the arena header");
    if (capacity > 0) {
        capacity = align_up(capacity);
        a->base = aligned_alloc(SB_ARENA_ALIGN, capacity);
        if (!a->base) {
            free(a);
            return sb_fail(err, SB_ENOMEM, "arena: cannot allocate %zu bytes (%.1f MiB)", capacity,
                           (double)capacity / (1024.0 * 1024.0));
        }
        a->capacity = capacity;
    }
    *out = a;
    return SB_OK;
}

void sb_arena_free(sb_arena *a)
{
    if (!a)
        return;
    free(a->base);
    free(a);
}

void *sb_arena_alloc(sb_arena *a, size_t bytes)
{
    size_t n = align_up(bytes ? bytes : 1);
    if (n < bytes) /* overflow */
        return NULL;
    if (!a->base) { /* measuring arena: record only */
        a->used += n;
        if (a->used > a->peak)
            a->peak = a->used;
        return NULL;
    }
    if (n > a->capacity - a->used)
        return NULL;
    void *p = a->base + a->used;
    a->used += n;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

void *sb_arena_alloc_checked(sb_arena *a, size_t bytes, const char *what, sb_error *err)
{
    void *p = sb_arena_alloc(a, bytes);
    if (!p)
        sb_fail(err, SB_ENOMEM,
                "arena: %s needs %zu bytes but only %zu of %zu are free (plan a larger arena)",
                what ? what : "allocation", bytes, a->capacity - a->used, a->capacity);
    return p;
}

size_t sb_arena_mark(const sb_arena *a) { return a->used; }

void sb_arena_reset(sb_arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}

size_t sb_arena_used(const sb_arena *a) { return a->used; }
size_t sb_arena_peak(const sb_arena *a) { return a->peak; }
size_t sb_arena_capacity(const sb_arena *a) { return a->capacity; }
void sb_arena_reset_peak(sb_arena *a) { a->peak = a->used; }
