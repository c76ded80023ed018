/* preload_out.c - the allocation-free writer of preload_out.h. */
#include "preload_out.h"

#include <errno.h>
#include <unistd.h>

struct preload_out preload_out_start(int fd)
{
    struct preload_out o;
    o.fd = fd;
    o.len = 0;
    return o;
}

void preload_flush(struct preload_out *o)
{
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    o->len = 0;
}

/* Appends one character, flushing a full buffer first. */
static void put_char(struct preload_out *o, char c)
{
    if (o->len == sizeof(o->buf))
        preload_flush(o);
    o->buf[o->len++] = c;
}

void preload_put_str(struct preload_out *o, const char *s)
{
    while (*s != '\0')
        put_char(o, *s++);
}

void preload_put_dec(struct preload_out *o, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        put_char(o, digits[--n]);
}

void preload_put_hex(struct preload_out *o, uint64_t v)
{
    char digits[16];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    put_char(o, '0');
    put_char(o, 'x');
    while (n > 0)
        put_char(o, digits[--n]);
}
