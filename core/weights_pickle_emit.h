/* Internal: a growable byte buffer and pickle opcode emitters shared by the
 * torch zip writer and the memory bank writer (core/weights_write.c). */
#ifndef SB_WEIGHTS_PICKLE_EMIT_H
#define SB_WEIGHTS_PICKLE_EMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} pbuf;

int pbuf_put(pbuf *b, const void *p, size_t n);
int pbuf_byte(pbuf *b, uint8_t c);
void pk_int(pbuf *b, int64_t v);
void pk_str(pbuf *b, const char *s); /* BINUNICODE */
void pk_global(pbuf *b, const char *mod, const char *name);
void pk_put(pbuf *b, uint8_t idx);
void pk_get(pbuf *b, uint8_t idx);
void pk_int_tuple(pbuf *b, int n, const int64_t *v);
void pk_tensor(pbuf *b, int *m_rebuild, int *m_stype, int m_odict, const char *stype, const char *key,
               const char *location, int64_t numel, int64_t offset, int ndim, const int64_t *shape,
               const int64_t *stride);

#endif
