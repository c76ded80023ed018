#include "kprintf.h"

#include <stdbool.h>
#include <stdint.h>

#include "console.h"
#include "cpu.h"
#include "kstring.h"

struct fmt_spec {
    bool left;
    bool zero;
    int width;
    int precision; /* -1 when absent */
};

static int emit_padding(kputc_fn out, void *ctx, char c, int count)
{
    for (int i = 0; i < count; i++)
        out(c, ctx);
    return count > 0 ? count : 0;
}

/* Emits the digits of value in base (10 or 16) with sign and padding. */
static int emit_number(kputc_fn out, void *ctx, uint64_t value, bool negative, unsigned base, bool upper,
                       const struct fmt_spec *spec)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char buf[24];
    int len = 0;
    do {
        buf[len++] = digits[value % base];
        value /= base;
    } while (value != 0);

    int body = len + (negative ? 1 : 0);
    int pad = spec->width - body;
    int n = 0;
    if (!spec->left && !spec->zero)
        n += emit_padding(out, ctx, ' ', pad);
    if (negative) {
        out('-', ctx);
        n++;
    }
    if (!spec->left && spec->zero)
        n += emit_padding(out, ctx, '0', pad);
    while (len > 0) {
        out(buf[--len], ctx);
        n++;
    }
    if (spec->left)
        n += emit_padding(out, ctx, ' ', pad);
    return n;
}

static int emit_string(kputc_fn out, void *ctx, const char *s, const struct fmt_spec *spec)
{
    if (s == NULL)
        s = "(null)";
    int len = 0;
    while (s[len] != '\0' && (spec->precision < 0 || len < spec->precision))
        len++;
    int n = 0;
    if (!spec->left)
        n += emit_padding(out, ctx, ' ', spec->width - len);
    for (int i = 0; i < len; i++)
        out(s[i], ctx);
    n += len;
    if (spec->left)
        n += emit_padding(out, ctx, ' ', spec->width - len);
    return n;
}

enum length { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE };

static int64_t fetch_signed(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (signed char)va_arg(*ap, int);
    case LEN_SHORT: return (short)va_arg(*ap, int);
    case LEN_LONG: return va_arg(*ap, long);
    case LEN_LLONG: return va_arg(*ap, long long);
    case LEN_SIZE: return (int64_t)va_arg(*ap, size_t);
    default: return va_arg(*ap, int);
    }
}

static uint64_t fetch_unsigned(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (unsigned char)va_arg(*ap, unsigned int);
    case LEN_SHORT: return (unsigned short)va_arg(*ap, unsigned int);
    case LEN_LONG: return va_arg(*ap, unsigned long);
    case LEN_LLONG: return va_arg(*ap, unsigned long long);
    case LEN_SIZE: return va_arg(*ap, size_t);
    default: return va_arg(*ap, unsigned int);
    }
}

int kvformat(kputc_fn out, void *ctx, const char *fmt, va_list ap_in)
{
    va_list ap;
    va_copy(ap, ap_in);
    int n = 0;

    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%') {
            out(*p, ctx);
            n++;
            continue;
        }
        const char *start = p++;
        struct fmt_spec spec = {.precision = -1};
        for (;; p++) {
            if (*p == '-')
                spec.left = true;
            else if (*p == '0')
                spec.zero = true;
            else
                break;
        }
        if (*p == '*') {
            spec.width = va_arg(ap, int);
            if (spec.width < 0) {
                spec.left = true;
                spec.width = -spec.width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                spec.width = spec.width * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            spec.precision = 0;
            if (*p == '*') {
                spec.precision = va_arg(ap, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9')
                    spec.precision = spec.precision * 10 + (*p++ - '0');
            }
        }
        enum length len = LEN_INT;
        if (*p == 'h') {
            len = LEN_SHORT;
            if (*++p == 'h') {
                len = LEN_CHAR;
                p++;
            }
        } else if (*p == 'l') {
            len = LEN_LONG;
            if (*++p == 'l') {
                len = LEN_LLONG;
                p++;
            }
        } else if (*p == 'z') {
            len = LEN_SIZE;
            p++;
        }

        switch (*p) {
        case 'd':
        case 'i': {
            int64_t v = fetch_signed(&ap, len);
            uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            n += emit_number(out, ctx, mag, v < 0, 10, false, &spec);
            break;
        }
        case 'u': n += emit_number(out, ctx, fetch_unsigned(&ap, len), false, 10, false, &spec); break;
        case 'x':
        case 'X': n += emit_number(out, ctx, fetch_unsigned(&ap, len), false, 16, *p == 'X', &spec); break;
        case 'p': {
            struct fmt_spec pspec = {.zero = true, .width = 16, .precision = -1};
            out('0', ctx);
            out('x', ctx);
            n += 2 + emit_number(out, ctx, (uintptr_t)va_arg(ap, void *), false, 16, false, &pspec);
            break;
        }
        case 's': n += emit_string(out, ctx, va_arg(ap, const char *), &spec); break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!spec.left)
                n += emit_padding(out, ctx, ' ', spec.width - 1);
            out(c, ctx);
            n++;
            if (spec.left)
                n += emit_padding(out, ctx, ' ', spec.width - 1);
            break;
        }
        case '%':
            out('%', ctx);
            n++;
            break;
        default:
            /* Unknown or truncated conversion: print it verbatim. */
            for (const char *q = start; q <= p && *q != '\0'; q++, n++)
                out(*q, ctx);
            if (*p == '\0')
                p--;
            break;
        }
    }
    va_end(ap);
    return n;
}

struct buf_sink {
    char *buf;
    size_t size;
    size_t pos;
};

static void buf_putc(char c, void *ctx)
{
    struct buf_sink *s = ctx;
    if (s->pos + 1 < s->size)
        s->buf[s->pos] = c;
    s->pos++;
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct buf_sink sink = {buf, size, 0};
    int n = kvformat(buf_putc, &sink, fmt, ap);
    if (size > 0)
        buf[sink.pos < size ? sink.pos : size - 1] = '\0';
    return n;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* Console output is staged in a small buffer so each console write is a run
   of characters rather than one call per character. */
struct console_sink {
    char buf[128];
    size_t len;
};

static void console_putc(char c, void *ctx)
{
    struct console_sink *s = ctx;
    s->buf[s->len++] = c;
    if (s->len == sizeof(s->buf)) {
        console_write(s->buf, s->len);
        s->len = 0;
    }
}

int kvprintf(const char *fmt, va_list ap)
{
    struct console_sink sink = {.len = 0};
    /* One message at a time: an interrupt handler printing mid-line would
       otherwise interleave with this one. */
    unsigned long flags = irq_save();
    int n = kvformat(console_putc, &sink, fmt, ap);
    console_write(sink.buf, sink.len);
    irq_restore(flags);
    return n;
}

int kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvprintf(fmt, ap);
    va_end(ap);
    return n;
}
