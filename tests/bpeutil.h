/* bpeutil.h - what the tests that write their own small tokenizer.json files share
 * (test_bpe.c, test_tasks.c): Qwen's pre-tokenizer regex and GPT-2's byte-level alphabet. */
#ifndef KSA_TESTS_BPEUTIL_H
#define KSA_TESTS_BPEUTIL_H

#include <stdio.h>

/* The Qwen2/Qwen3 pre-tokenizer regex, as tokenizer.json spells it (JSON-escaped). */
#define QWEN_REGEX                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "              \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* GPT-2's byte -> character, as UTF-8 into out (JSON-escaped where needed; at most 3 bytes
 * and a NUL). */
static inline void bpe_byte_char(int byte, char *out)
{
    int extra = 0, cp = -1;
    for (int b = 0; b < 256 && cp < 0; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        int c = printable ? b : 256 + extra++;
        if (b == byte)
            cp = c;
    }
    if (cp == '"' || cp == '\\')
        sprintf(out, "\\%c", cp);
    else if (cp < 0x80)
        sprintf(out, "%c", cp);
    else
        sprintf(out, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
}

#endif
