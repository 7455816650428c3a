/* bench.h - what every benchmark prints about the machine it ran on, and the parsing of its
 * numeric options.                                                                      */
#ifndef KSA_BENCH_BENCH_H
#define KSA_BENCH_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CPU's model name from /proc/cpuinfo ("unknown CPU" if none). */
static inline void bench_cpu_name(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(buf, n, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    fclose(f);
}

/* The integer at s (ended by '\0' or ','), for option `what` of program `prog`: digits only,
 * positive unless zero_ok; anything else prints one line and exits with status 2. */
static inline size_t bench_parse_size(const char *prog, const char *s, const char *what,
                                      int zero_ok)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || (*end != '\0' && *end != ',') || (v == 0 && !zero_ok)) {
        fprintf(stderr, "%s: %s must be a %s integer, got '%s'\n", prog, what,
                zero_ok ? "non-negative" : "positive", s);
        exit(2);
    }
    return (size_t)v;
}

/* A comma-separated list of positive integers into out[0..max), returns how many; more
 * than max is an error (status 2). */
static inline size_t bench_parse_sizes(const char *prog, const char *v, const char *what,
                                       size_t *out, size_t max)
{
    size_t n = 0;
    for (const char *p = v; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
        if (n == max) {
            fprintf(stderr, "%s: %s takes at most %zu values\n", prog, what, max);
            exit(2);
        }
        out[n++] = bench_parse_size(prog, p, what, 0);
    }
    return n;
}

#endif
