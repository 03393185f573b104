/* The names and paths a manifest may hold, checked the same way when a
 * manifest is parsed and before one is committed (manifest_validate), so that
 * a repository someone else wrote can only name what this repository could have
 * written. Domain names, disk targets and formats become parts of file names
 * (restore writes NAME-TARGET.FORMAT and NAME.xml); disk sources and chain
 * paths are where an in-place restore writes. A name is therefore one file-name
 * component that cannot climb ("/", ".", ".."), short enough that every file
 * name built from it fits in 255 bytes, and free of control characters; a path
 * has no ".." component. The rules are in docs/repository-format.md, "Names and
 * paths". */
#include "config.h"
#include "repo-internal.h"

#include <string.h>

static bool
has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

/* Letters, digits and the characters in EXTRA, starting with a letter or digit. */
static bool
plain_word(const char *s, const char *extra)
{
    if (!g_ascii_isalnum(s[0]))
        return false;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && !strchr(extra, *p))
            return false;
    return true;
}

static const char *
domain_problem(const char *s, size_t n)
{
    if (n > REPO_MAX_DOMAIN_NAME)
        return "is longer than " G_STRINGIFY(REPO_MAX_DOMAIN_NAME) " bytes";
    if (strchr(s, '/'))
        return "contains \"/\"";
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return "is \".\" or \"..\"";
    return NULL;
}

static const char *
uuid_problem(const char *s)
{
    unsigned digits = 0;

    if (strlen(s) > 64)
        return "is not a UUID (32 hex digits and dashes)";
    for (const char *p = s; *p; p++) {
        if (g_ascii_isxdigit(*p))
            digits++;
        else if (*p != '-')
            return "is not a UUID (32 hex digits and dashes)";
    }
    return digits == 32 ? NULL : "is not a UUID (32 hex digits and dashes)";
}

/* Absolute, relative or a URL: what is refused is climbing, anywhere. */
static const char *
path_problem(const char *s, size_t n)
{
    if (n > REPO_MAX_PATH)
        return "is longer than " G_STRINGIFY(REPO_MAX_PATH) " bytes";
    for (const char *p = s; *p; p++)
        if ((p == s || p[-1] == '/') && p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
            return "has a \"..\" component";
    return NULL;
}

const char *
repo_name_problem(RepoNameKind kind, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0)
        return "is empty";
    if (!g_utf8_validate(s, -1, NULL))
        return "is not valid UTF-8";
    if (has_control(s))
        return "contains a control character";
    switch (kind) {
    case REPO_NAME_DOMAIN:
        return domain_problem(s, n);
    case REPO_NAME_TARGET:
        if (n > REPO_MAX_TARGET || !plain_word(s, "_-."))
            return "is not 1 to " G_STRINGIFY(REPO_MAX_TARGET) " letters, digits, \"_\", \"-\" and \".\", "
                   "starting with a letter or digit";
        return NULL;
    case REPO_NAME_FORMAT:
        if (n > REPO_MAX_FORMAT || !plain_word(s, "_-"))
            return "is not 1 to " G_STRINGIFY(REPO_MAX_FORMAT) " letters, digits, \"_\" and \"-\", "
                   "starting with a letter or digit";
        return NULL;
    case REPO_NAME_UUID:
        return uuid_problem(s);
    case REPO_NAME_PATH:
    default:
        return path_problem(s, n);
    }
}
