/* settings.h - tables of `key = value` settings: one parser for the model configuration, the
 * training configuration, checkpoint /config and /train attributes and the command line.
 *
 * A table describes the fields of one struct: each key has a kind, the field's offset and a
 * default given as text (parsed like a value from a file). Values are parsed by kind; errors
 * name where the value came from ("configs/tiny.conf:12", "command line"), the key and the
 * value. Files hold `key = value` lines, `#` comments and blank lines.                    */
#ifndef KSA_CORE_SETTINGS_H
#define KSA_CORE_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

#include "core/core.h"

#define KSA_CONFIG_STR 256 /* default capacity of a STRING field, with its '\0' */

typedef enum { KSA_KEY_INT, KSA_KEY_FLOAT, KSA_KEY_BOOL, KSA_KEY_STRING } ksa_key_kind;

typedef struct {
    const char *name;
    ksa_key_kind kind;         /* INT, BOOL: long (-1 = unset, where the owner allows it); FLOAT:
                                * double; STRING: char[str_cap] */
    size_t offset;             /* into the struct the table describes */
    const char *default_value; /* "" for none */
    size_t str_cap;            /* STRING: bytes of the field (0: KSA_CONFIG_STR) */
    const char *help;          /* one line for `ksa <command> --help` */
} ksa_config_key;

/* One entry of a table describing the field `name` of struct `type`:
 *   static const ksa_config_key keys[] = {
 *       KSA_KEY(my_config, lr, KSA_KEY_FLOAT, "4e-4", "peak learning rate"), ...};       */
#define KSA_KEY(type, name, kind, def, help)                                                       \
    {                                                                                              \
#name, kind, offsetof(type, name), def, sizeof(((type *)0)->name), help                    \
    }

/* The key called `name` in keys[0..n), or NULL. */
const ksa_config_key *ksa_config_key_find(const ksa_config_key *keys, size_t n, const char *name);

/* Parses `value` (surrounding blanks and one pair of quotes stripped) by the key's kind into
 * base + k->offset. INT values must be >= 0, FLOAT finite, BOOL true/false/1/0. */
ksa_status ksa_config_key_set(const ksa_config_key *k, void *base, const char *value,
                              const char *origin);

/* The value of key k in base as ksa_config_keys_write writes it ("(unset)" for an INT or BOOL
 * of -1); returns buf. */
const char *ksa_config_key_format(const ksa_config_key *k, const void *base, char *buf, size_t cap);

/* Writes every key of the table as `key = value`, loadable again: FLOAT in the shortest exact
 * form; an INT or BOOL of -1 as the comment `# key = (unset)`; a STRING with blanks at an
 * end or a pair of quotes around it inside double quotes (reading strips one pair). The
 * format has no escapes: a STRING holding '#' or a line break (possible from the command
 * line only) does not read back.                                                         */
void ksa_config_keys_write(const ksa_config_key *keys, size_t n, const void *base, FILE *f);

/* Reads `key = value` lines of a configuration file and hands each to set(ctx, key, value,
 * origin), origin being "path:line". The first error stops the reading and is returned. */
typedef ksa_status (*ksa_config_setter)(void *ctx, const char *key, const char *value,
                                        const char *origin);
ksa_status ksa_config_file_read(const char *path, ksa_config_setter set, void *ctx);

/* ---- "did you mean" ----------------------------------------------------------------------- *
 * The known names nearest to an unknown one, by edit distance (insertions, deletions,
 * substitutions and swaps of two neighbours each count 1; '-' and '_' are the same). A name
 * is near when its distance is at most 1 (unknown names of up to 3 characters), 2 (up to 9)
 * or 3 (longer), or when it starts with the unknown name (3 characters or more: "--val" for
 * val_data), which counts as distance 1. The nearest ones are kept, at most three.       */
typedef struct {
    char unknown[128];    /* '-' made '_' */
    const char *near[3];  /* borrowed: the nearest names seen, in the order given */
    size_t n_near, score; /* score: their distance */
} ksa_suggest;

void ksa_suggest_init(ksa_suggest *s, const char *unknown);
/* Considers one known name (kept by pointer: it must outlive s). */
void ksa_suggest_add(ksa_suggest *s, const char *known);
/* " (did you mean --seq-len or --seed?)" with as_option (names with "--", '_' as '-'), or
 * " (did you mean 'seq_len'?)"; "" when no name is near. Returns buf.                    */
const char *ksa_suggest_text(const ksa_suggest *s, int as_option, char *buf, size_t cap);

/* The distance used by ksa_suggest (optimal string alignment), '-' == '_'. */
size_t ksa_edit_distance(const char *a, const char *b);

#endif
