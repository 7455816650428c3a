/* replay.c - main() for a fuzz harness without libFuzzer: runs LLVMFuzzerTestOneInput once
 * on every file named (a folder: on every file in it), as libFuzzer does when given files.
 * Built with gcc and ASan + UBSan by `make fuzz-replay`, so the seed corpora and the crash
 * reproducers run in CI without clang.                                                    */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzzutil.h"

/* Runs the harness on the file at path; returns 1 if it was run, 0 if it could not be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 0;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *bigger = realloc(buf, 2 * cap);
            if (!bigger)
                free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    int ok = buf && !ferror(f);
    fclose(f);
    if (ok) {
        /* an exact-size copy, so that ASan sees a read past the input's end */
        uint8_t *input = malloc(n ? n : 1);
        ok = input != NULL;
        if (ok) {
            memcpy(input, buf, n);
            LLVMFuzzerTestOneInput(input, n);
            free(input);
        }
    }
    free(buf);
    if (!ok)
        fprintf(stderr, "replay: cannot read %s\n", path);
    return ok;
}

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    size_t runs = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed++;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            int ok = replay_file(argv[i]);
            runs += ok, failed += !ok;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, alphasort);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s: %s\n", argv[i], strerror(errno));
            failed++;
            continue;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            if (names[k]->d_name[0] != '.' && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                int ok = replay_file(path);
                runs += ok, failed += !ok;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("replay %s: %zu inputs run, %zu unreadable\n", argv[0], runs, failed);
    return failed ? 1 : 0;
}
