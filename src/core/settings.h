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
} ksa_config_key;

/* One entry of a table describing the field `name` of struct `type`:
 *   static const ksa_config_key keys[] = {KSA_KEY(my_config, lr, KSA_KEY_FLOAT, "4e-4"), ...}; */
#define KSA_KEY(type, name, kind, def)                                                             \
    {                                                                                              \
#name, kind, offsetof(type, name), def, sizeof(((type *)0)->name)                          \
    }

/* The key called `name` in keys[0..n), or NULL. */
const ksa_config_key *ksa_config_key_find(const ksa_config_key *keys, size_t n, const char *name);

/* Parses `value` (surrounding blanks and one pair of quotes stripped) by the key's kind into
 * base + k->offset. INT values must be >= 0, FLOAT finite, BOOL true/false/1/0. */
ksa_status ksa_config_key_set(const ksa_config_key *k, void *base, const char *value,
                              const char *origin);

/* Writes every key of the table as `key = value` (loadable again; FLOAT in the shortest exact
 * form; an INT or BOOL of -1 as the comment `# key = (unset)`). */
void ksa_config_keys_write(const ksa_config_key *keys, size_t n, const void *base, FILE *f);

/* Reads `key = value` lines of a configuration file and hands each to set(ctx, key, value,
 * origin), origin being "path:line". The first error stops the reading and is returned. */
typedef ksa_status (*ksa_config_setter)(void *ctx, const char *key, const char *value,
                                        const char *origin);
ksa_status ksa_config_file_read(const char *path, ksa_config_setter set, void *ctx);

#endif
