/* Enums spelled as strings (libvirt's XML attribute values, option values):
 * one macro writes the table and both directions, so that a pair of
 * name_to_string / name_from_string functions is never written by hand again,
 * and a table that misses a value fails to compile. As libvirt's VIR_ENUM_IMPL:
 *
 *     VS_ENUM_IMPL(vs_pool_type, VsPoolType, VS_POOL_LAST, "dir", "fs", ...)
 *
 * defines `const char *vs_pool_type_to_string(VsPoolType)` (NULL for a value out
 * of range or one without a spelling) and `int vs_pool_type_from_string(const
 * char *)` (the value, or -1 for NULL or an unknown string). A NULL entry is a
 * value that has no spelling: nothing parses to it. VS_ENUM_IMPL_STATIC makes
 * both functions static to the file. */
#pragma once

#include <glib.h>
#include <string.h>

static inline const char *
vs_enum_to_string(const char *const *names, int n, int value)
{
    return value >= 0 && value < n ? names[value] : NULL;
}

static inline int
vs_enum_from_string(const char *const *names, int n, const char *str)
{
    for (int i = 0; str && i < n; i++) {
        if (names[i] && !strcmp(str, names[i]))
            return i;
    }
    return -1;
}

#define VS_ENUM_IMPL_LINKAGE_(linkage, name, type, last, ...) \
    static const char *const name##_names_[] = { __VA_ARGS__ }; \
    G_STATIC_ASSERT(G_N_ELEMENTS(name##_names_) == (last)); \
    linkage const char *name##_to_string(type value) \
    { \
        return vs_enum_to_string(name##_names_, (int)(last), (int)value); \
    } \
    linkage int name##_from_string(const char *str) \
    { \
        return vs_enum_from_string(name##_names_, (int)(last), str); \
    }

#define VS_ENUM_IMPL(name, type, last, ...) \
    VS_ENUM_IMPL_LINKAGE_(, name, type, last, __VA_ARGS__)
#define VS_ENUM_IMPL_STATIC(name, type, last, ...) \
    VS_ENUM_IMPL_LINKAGE_(static G_GNUC_UNUSED, name, type, last, __VA_ARGS__)
