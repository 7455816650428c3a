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

void ksa_config_keys_write(const ksa_config_key *keys, size_t n, const void *base, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        const char *field = (const char *)base + k->offset;
        switch (k->kind) {
        case KSA_KEY_INT:
        case KSA_KEY_BOOL: {
            long v = *(const long *)field;
            if (v < 0) /* unset optional key */
                fprintf(f, "# %s = (unset)\n", k->name);
            else if (k->kind == KSA_KEY_BOOL)
                fprintf(f, "%s = %s\n", k->name, v ? "true" : "false");
            else
                fprintf(f, "%s = %ld\n", k->name, v);
            break;
        }
        case KSA_KEY_FLOAT: {
            char num[32];
            fprintf(f, "%s = %s\n", k->name, ksa_format_double(num, *(const double *)field));
            break;
        }
        case KSA_KEY_STRING:
            fprintf(f, "%s = %s\n", k->name, field);
            break;
        }
    }
}

ksa_status ksa_config_file_read(const char *path, ksa_config_setter set, void *ctx)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ksa_fail(KSA_EIO, "cannot open configuration '%s': %s", path, strerror(errno));
    char line[4096], origin[600];
    ksa_status st = KSA_OK;
    for (int lineno = 1; st == KSA_OK && fgets(line, sizeof line, f); lineno++) {
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            st = ksa_fail(KSA_EFORMAT, "%s: line longer than %zu characters", origin,
                          sizeof line - 2);
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
        st = set(ctx, line, eq + 1, origin);
    }
    if (st == KSA_OK && ferror(f))
        st = ksa_fail(KSA_EIO, "cannot read configuration '%s': %s", path, strerror(errno));
    fclose(f);
    return st;
}
