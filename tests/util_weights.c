/* Builders of small torch files for the weights tests. */
#include "util_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

void build_state_dict_pickle(pbuf *b, const char *wrap, const tspec *t, int n, int legacy)
{
    uint8_t proto[2] = {0x80, 2};
    pbuf_put(b, proto, 2);
    if (wrap) {
        pbuf_byte(b, '}');
        pk_str(b, wrap);
    }
    pk_global(b, "collections", "OrderedDict");
    pk_put(b, 0);
    pbuf_byte(b, ')');
    pbuf_byte(b, 'R');
    if (n > 0)
        pbuf_byte(b, '(');
    for (int i = 0; i < n; i++) {
        pk_str(b, t[i].name);
        pk_global(b, "torch._utils", "_rebuild_tensor_v2");
        pbuf_byte(b, '(');
        pbuf_byte(b, '(');
        pk_str(b, "storage");
        pk_global(b, "torch", t[i].stype);
        pk_str(b, t[i].key);
        pk_str(b, "cpu");
        pk_int(b, t[i].numel);
        if (legacy)
            pbuf_byte(b, 'N');
        pbuf_byte(b, 't');
        pbuf_byte(b, 'Q');
        pk_int(b, t[i].offset);
        pk_int_tuple(b, t[i].ndim, t[i].shape);
        pk_int_tuple(b, t[i].ndim, t[i].stride);
        pbuf_byte(b, 0x89);
        pk_get(b, 0);
        pbuf_byte(b, ')');
        pbuf_byte(b, 'R');
        pbuf_byte(b, 't');
        pbuf_byte(b, 'R');
    }
    if (n > 0)
        pbuf_byte(b, 'u');
    if (wrap)
        pbuf_byte(b, 's');
    pbuf_byte(b, '.');
}

void write_zip(const char *path, int n, const char *const *names, const void *const *data, const size_t *lens)
{
    int e = 0;
    remove(path);
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &e);
    if (!z) {
        fprintf(stderr, "write_zip: cannot create %s\n", path);
        return;
    }
    for (int i = 0; i < n; i++) {
        zip_source_t *s = zip_source_buffer(z, data[i], lens[i], 0);
        zip_int64_t idx = zip_file_add(z, names[i], s, ZIP_FL_OVERWRITE);
        zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    if (zip_close(z) != 0)
        fprintf(stderr, "write_zip: %s: %s\n", path, zip_strerror(z));
}

void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(data, 1, len, f);
    fclose(f);
}

uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}
