/* settings.c - the settings-table parser: values by kind, files of `key = value` lines. */
#include "core/settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const ksa_config_key *ksa_config_key_find(const ksa_config_key *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static void strip(char *s)
{
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    size_t start = 0;
    while (isspace((unsigned char)s[start]))
        start++;
    memmove(s, s + start, len - start + 1);
    len = strlen(s);
    if (len >= 2 && (s[0] == '"' || s[0] == '\'') && s[len - 1] == s[0]) {
        memmove(s, s + 1, len - 2);
        s[len - 2] = '\0';
    }
}

static ksa_status parse_bool(const char *v, long *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0"))
        *out = 0;
    else
        return KSA_EINVAL;
    return KSA_OK;
}

ksa_status ksa_config_key_set(const ksa_config_key *k, void *base, const char *value,
                              const char *origin)
{
    const char *key = k->name;
    size_t cap = k->str_cap ? k->str_cap : KSA_CONFIG_STR;
    char v[4096];
    if (strlen(value) >= sizeof v || (k->kind == KSA_KEY_STRING && strlen(value) >= cap))
        return ksa_fail(KSA_EINVAL, "%s: value of '%s' is longer than %zu characters", origin, key,
                        (k->kind == KSA_KEY_STRING ? cap : sizeof v) - 1);
    strcpy(v, value);
    strip(v);
    char *field = (char *)base + k->offset;
    char *end = NULL;
    errno = 0;
    switch (k->kind) {
    case KSA_KEY_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end)
            return ksa_fail(KSA_EINVAL, "%s: %s = '%s' is not an integer", origin, key, v);
        if (x < 0)
            return ksa_fail(KSA_EINVAL, "%s: %s = %ld must not be negative", origin, key, x);
        *(long *)field = x;
        return KSA_OK;
    }
    case KSA_KEY_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return ksa_fail(KSA_EINVAL, "%s: %s = '%s' is not a finite number", origin, key, v);
        *(double *)field = x;
        return KSA_OK;
    }
    case KSA_KEY_BOOL:
        if (parse_bool(v, (long *)field) != KSA_OK)
            return ksa_fail(KSA_EINVAL, "%s: %s = '%s' is not a boolean (true/false/1/0)", origin,
                            key, v);
        return KSA_OK;
    case KSA_KEY_STRING:
        strcpy(field, v);
        return KSA_OK;
    }
    return KSA_OK;
}

const char *ksa_config_key_format(const ksa_config_key *k, const void *base, char *buf, size_t cap)
{
    const char *field = (const char *)base + k->offset;
    switch (k->kind) {
    case KSA_KEY_INT:
    case KSA_KEY_BOOL: {
        long v = *(const long *)field;
        if (v < 0) /* unset optional key */
            snprintf(buf, cap, "(unset)");
        else if (k->kind == KSA_KEY_BOOL)
            snprintf(buf, cap, "%s", v ? "true" : "false");
        else
            snprintf(buf, cap, "%ld", v);
        break;
    }
    case KSA_KEY_FLOAT: {
        char num[32];
        snprintf(buf, cap, "%s", ksa_format_double(num, *(const double *)field));
        break;
    }
    case KSA_KEY_STRING:
        snprintf(buf, cap, "%s", field);
        break;
    }
    return buf;
}

/* 1 if reading `value` back would change it: strip() would take blanks off its ends or a
 * pair of quotes around it. Written inside double quotes, it reads back as it is. */
static int needs_quotes(const char *v)
{
    size_t len = strlen(v);
    return len && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[len - 1]) ||
                   (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]));
}

void ksa_config_keys_write(const ksa_config_key *keys, size_t n, const void *base, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        size_t cap = (k->kind == KSA_KEY_STRING && k->str_cap ? k->str_cap : KSA_CONFIG_STR) + 64;
        char *value = ksa_alloc(cap); /* a STRING field may be longer than KSA_CONFIG_STR */
        int unset = (k->kind == KSA_KEY_INT || k->kind == KSA_KEY_BOOL) &&
                    *(const long *)((const char *)base + k->offset) < 0;
        ksa_config_key_format(k, base, value, cap);
        const char *quote = k->kind == KSA_KEY_STRING && needs_quotes(value) ? "\"" : "";
        fprintf(f, "%s%s = %s%s%s\n", unset ? "# " : "", k->name, quote, value, quote);
        ksa_free(value);
    }
}

ksa_status ksa_config_file_read(const char *path, ksa_config_setter set, void *ctx)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ksa_fail(KSA_EIO, "cannot open configuration '%s': %s", path, strerror(errno));
    enum { MAX_LINE = 4094, MAX_KEYS = 512 };
    char *line = NULL, origin[600];
    size_t cap = 0;
    ssize_t len;
    struct {
        char name[64];
        int lineno;
    } seen[MAX_KEYS]; /* the keys so far: a key given twice is a mistake, not an override */
    int n_seen = 0;
    ksa_status st = KSA_OK;
    for (int lineno = 1; st == KSA_OK && (len = getline(&line, &cap, f)) >= 0; lineno++) {
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (len > MAX_LINE + 1 || (len == MAX_LINE + 1 && line[len - 1] != '\n')) {
            st = ksa_fail(KSA_EFORMAT, "%s: line longer than %d characters", origin, MAX_LINE);
            break;
        }
        if (memchr(line, '\0', (size_t)len)) {
            st = ksa_fail(KSA_EFORMAT, "%s: the line holds a NUL byte (not a text file?)", origin);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *eq = strchr(line, '=');
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            continue;
        if (!eq) {
            st = ksa_fail(KSA_EFORMAT, "%s: expected 'key = value', got '%s'", origin, p);
            break;
        }
        *eq = '\0';
        strip(line);
        for (int k = 0; k < n_seen; k++)
            if (!strcmp(seen[k].name, line)) {
                st = ksa_fail(KSA_EINVAL, "%s: key '%s' given twice (first at line %d)", origin,
                              line, seen[k].lineno);
                break;
            }
        if (st != KSA_OK)
            break;
        if (n_seen < MAX_KEYS && strlen(line) < sizeof seen[0].name) {
            snprintf(seen[n_seen].name, sizeof seen[0].name, "%s", line);
            seen[n_seen++].lineno = lineno;
        }
        st = set(ctx, line, eq + 1, origin);
    }
    if (st == KSA_OK && ferror(f))
        st = ksa_fail(KSA_EIO, "cannot read configuration '%s': %s", path, strerror(errno));
    free(line);
    fclose(f);
    return st;
}

/* ---- "did you mean" ----------------------------------------------------------------------- */

#define NAME_MAX_CHARS 127 /* longer names are compared on their first 127 characters */

static char same_dash(char c)
{
    return c == '-' ? '_' : c;
}

size_t ksa_edit_distance(const char *a, const char *b)
{
    size_t n = strnlen(a, NAME_MAX_CHARS), m = strnlen(b, NAME_MAX_CHARS);
    /* three rows of the dynamic programme: d[i][j] = distance of a[0..i) and b[0..j) */
    size_t rows[3][NAME_MAX_CHARS + 1];
    size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t cost = same_dash(a[i - 1]) != same_dash(b[j - 1]);
            size_t d = prev[j - 1] + cost;
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && same_dash(a[i - 1]) == same_dash(b[j - 2]) &&
                same_dash(a[i - 2]) == same_dash(b[j - 1]) && before[j - 2] + 1 < d)
                d = before[j - 2] + 1; /* two neighbours swapped */
            cur[j] = d;
        }
        size_t *t = before;
        before = prev, prev = cur, cur = t;
    }
    return prev[m];
}

void ksa_suggest_init(ksa_suggest *s, const char *unknown)
{
    memset(s, 0, sizeof *s);
    snprintf(s->unknown, sizeof s->unknown, "%s", unknown);
    for (char *p = s->unknown; *p; p++)
        *p = same_dash(*p);
}

static int starts_with(const char *known, const char *prefix)
{
    for (; *prefix; prefix++, known++)
        if (same_dash(*known) != *prefix)
            return 0;
    return 1;
}

void ksa_suggest_add(ksa_suggest *s, const char *known)
{
    size_t len = strlen(s->unknown);
    size_t limit = len <= 3 ? 1 : len <= 9 ? 2 : 3;
    size_t d = ksa_edit_distance(s->unknown, known);
    if (d > 1 && len >= 3 && starts_with(known, s->unknown))
        d = 1;
    if (d > limit || d == 0)
        return;
    for (size_t i = 0; i < s->n_near; i++)
        if (!strcmp(s->near[i], known))
            return; /* the same name from two tables */
    if (s->n_near == 0 || d < s->score) {
        s->n_near = 0;
        s->score = d;
    }
    if (d == s->score && s->n_near < sizeof s->near / sizeof s->near[0])
        s->near[s->n_near++] = known;
}

const char *ksa_suggest_text(const ksa_suggest *s, int as_option, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    if (s->n_near == 0)
        return buf;
    used += (size_t)snprintf(buf, cap, " (did you mean ");
    for (size_t i = 0; i < s->n_near && used < cap; i++) {
        char name[NAME_MAX_CHARS + 1];
        snprintf(name, sizeof name, "%s", s->near[i]);
        if (as_option)
            for (char *p = name; *p; p++)
                *p = *p == '_' ? '-' : *p;
        const char *sep = i == 0 ? "" : i + 1 == s->n_near ? " or " : ", ";
        used +=
            (size_t)snprintf(buf + used, cap - used, as_option ? "%s--%s" : "%s'%s'", sep, name);
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "?)");
    return buf;
}
