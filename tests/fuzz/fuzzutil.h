/* fuzzutil.h - what the fuzz harnesses (tests/fuzz/fuzz_*.c) share: the readers take paths,
 * so each input is written to a file in a folder of this process, created on first use and
 * removed at exit; a /dev/null stream for the printers; the input cut into pieces.
 *
 * A harness is one function, LLVMFuzzerTestOneInput(data, size), that feeds the bytes to
 * the readers, frees everything it got (no leak across inputs) and aborts (fuzz_check) when
 * a property of the readers fails. It is linked either with libFuzzer (clang, `make fuzz`)
 * or with tests/fuzz/replay.c, a main() that runs it once on each file given (gcc ASan +
 * UBSan, `make fuzz-replay`).                                                              */
#ifndef KSA_TESTS_FUZZ_FUZZUTIL_H
#define KSA_TESTS_FUZZ_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Keeps a copy of stderr for fuzz_fail, before libFuzzer closes it (-close_fd_mask). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The folder of this process, "ksa-fuzz-XXXXXX" in $TMPDIR (if absolute) or /tmp. A crash
 * leaves it behind: run.sh, replay.sh and triage.sh point TMPDIR to a folder of their own,
 * in /dev/shm when they can (every input is written to a file), removed when they end. */
const char *fuzz_dir(void);

/* "<fuzz_dir>/<name>" into out (cap bytes); returns out. */
char *fuzz_path(char *out, size_t cap, const char *name);

/* Writes n bytes to path (replacing it); aborts if it cannot (a harness problem, not an input's).
 */
void fuzz_write_file(const char *path, const void *data, size_t n);

/* A stream to /dev/null, opened once. */
FILE *fuzz_devnull(void);

/* Aborts with the message when cond is false: a property of a reader that an input broke. */
#define fuzz_check(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)
void fuzz_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* The input, consumed from the front: bytes, integers (little-endian; 0 past the end) and
 * length-prefixed pieces. */
typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_input;

uint8_t fuzz_byte(fuzz_input *in);
uint16_t fuzz_u16(fuzz_input *in);
uint32_t fuzz_u32(fuzz_input *in);
/* A piece of at most max bytes, its length from one byte of the input (mod max + 1). */
const uint8_t *fuzz_piece(fuzz_input *in, size_t max, size_t *len);

#endif
