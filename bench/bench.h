/* bench.h - what every benchmark prints about the machine it ran on. */
#ifndef KSA_BENCH_BENCH_H
#define KSA_BENCH_BENCH_H

#include <stdio.h>
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

#endif
