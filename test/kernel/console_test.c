/* The formatter and the console capture hook. */
#include "ktest.h"

#include <stdint.h>

#include "console.h"
#include "kstring.h"

/* Formats into a buffer and checks the exact text and returned length. */
#define EXPECT_FORMAT(expected, ...)                                                           \
    do {                                                                                       \
        char buf_[128];                                                                        \
        int n_ = ksnprintf(buf_, sizeof(buf_), __VA_ARGS__);                                   \
        if (strcmp(buf_, expected) != 0)                                                       \
            ktest_fail(__FILE__, __LINE__, "format gave \"%s\", want \"%s\"", buf_, expected); \
        KASSERT_EQ(n_, strlen(expected));                                                      \
    } while (0)

KTEST(format_integers)
{
    EXPECT_FORMAT("0 -1 42", "%d %i %u", 0, -1, 42u);
    EXPECT_FORMAT("-2147483648 2147483647", "%d %d", INT32_MIN, INT32_MAX);
    EXPECT_FORMAT("4294967295", "%u", UINT32_MAX);
    EXPECT_FORMAT("-9223372036854775808", "%lld", (long long)INT64_MIN);
    EXPECT_FORMAT("18446744073709551615", "%llu", (unsigned long long)UINT64_MAX);
    EXPECT_FORMAT("18446744073709551615", "%lu", (unsigned long)UINT64_MAX);
    EXPECT_FORMAT("123456789012", "%zu", (size_t)123456789012ull);
    EXPECT_FORMAT("-5 250", "%hhd %hhu", (signed char)-5, (unsigned char)250);
}

KTEST(format_hex_and_pointers)
{
    EXPECT_FORMAT("ff FF deadbeef", "%x %X %x", 255u, 255u, 0xdeadbeefu);
    EXPECT_FORMAT("ffffffffffffffff", "%llx", (unsigned long long)UINT64_MAX);
    EXPECT_FORMAT("0x00000000000012ab", "%p", (void *)0x12ab);
    EXPECT_FORMAT("0xffffffff80000000", "%p", (void *)0xffffffff80000000ull);
}

KTEST(format_width_and_padding)
{
    EXPECT_FORMAT("   42", "%5d", 42);
    EXPECT_FORMAT("00042", "%05d", 42);
    EXPECT_FORMAT("-0042", "%05d", -42);
    EXPECT_FORMAT("42   |", "%-5d|", 42);
    EXPECT_FORMAT("000000ff", "%08x", 0xffu);
    EXPECT_FORMAT("   hi|hi   |", "%5s|%-5s|", "hi", "hi");
    EXPECT_FORMAT("    7", "%*d", 5, 7);
    EXPECT_FORMAT("abc", "%.3s", "abcdef");
    EXPECT_FORMAT("12345678", "%3d", 12345678);
}

KTEST(format_strings_chars_percent)
{
    EXPECT_FORMAT("a=x s=hello 100%", "a=%c s=%s 100%%", 'x', "hello");
    const char *volatile null_string = NULL; /* volatile: hide it from -Wformat */
    EXPECT_FORMAT("(null)", "%s", null_string);
    EXPECT_FORMAT("", "%s", "");
}

KTEST(format_truncates_and_reports_full_length)
{
    char buf[8];
    int n = ksnprintf(buf, sizeof(buf), "%s", "0123456789");
    KASSERT_EQ(n, 10);
    KASSERT(strcmp(buf, "0123456") == 0);
    KASSERT_EQ(ksnprintf(NULL, 0, "%d", 12345), 5);
}

KTEST(console_capture_records_kprintf)
{
    char buf[64];
    console_capture_begin(buf, sizeof(buf));
    kprintf("# captured %d %s\n", 7, "words");
    size_t n = console_capture_end();
    KASSERT(strcmp(buf, "# captured 7 words\n") == 0);
    KASSERT_EQ(n, 19);

    /* After the capture ends nothing more is recorded. */
    kprintf("# not captured\n");
    KASSERT(strcmp(buf, "# captured 7 words\n") == 0);
}

KTEST(console_capture_truncates)
{
    char buf[6];
    console_capture_begin(buf, sizeof(buf));
    kprintf("# 0123456789\n");
    KASSERT_EQ(console_capture_end(), 5);
    KASSERT(strcmp(buf, "# 012") == 0);
}
