/* What every fuzz target shares: the libFuzzer entry point's prototype, a check
 * that aborts (so that libFuzzer and the replay runner both record it as a
 * crash), and the contract every parser must keep on bad input: fail with a
 * VS_ERROR_XML error whose message names the document. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vs-xml.h"

#define FUZZ_FILENAME "fuzz.xml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* Inputs are C strings to the parsers, so an embedded NUL simply ends one. */
static inline char *
fuzz_string(const uint8_t *data, size_t size)
{
    return g_strndup((const char *)data, size);
}

static inline void
fuzz_check_parse_error(const GError *error)
{
    FUZZ_CHECK(error != NULL);
    FUZZ_CHECK(error->domain == VS_ERROR);
    FUZZ_CHECK(error->code == VS_ERROR_XML);
    FUZZ_CHECK(g_str_has_prefix(error->message, "xml: " FUZZ_FILENAME ": "));
}

/* Parse, format, parse the output again and format it again: the second round
 * must succeed and give the same text, or the formatter wrote something its
 * own parser reads differently. */
#define FUZZ_ROUND_TRIP(Type, parse, format_expr_a, format_expr_b) \
    do { \
        g_autofree char *xml_ = fuzz_string(data, size); \
        g_autoptr(GError) error_ = NULL; \
        g_autoptr(Type) def_ = parse(xml_, FUZZ_FILENAME, &error_); \
        g_autoptr(Type) def2_ = NULL; \
        g_autofree char *out_ = NULL; \
        g_autofree char *out2_ = NULL; \
        if (!def_) { \
            fuzz_check_parse_error(error_); \
            return 0; \
        } \
        FUZZ_CHECK(error_ == NULL); \
        out_ = format_expr_a; \
        FUZZ_CHECK(out_ != NULL); \
        def2_ = parse(out_, FUZZ_FILENAME, &error_); \
        if (!def2_) \
            fprintf(stderr, "reparse failed: %s\n--- output:\n%s\n", error_->message, out_); \
        FUZZ_CHECK(def2_ != NULL); \
        out2_ = format_expr_b; \
        FUZZ_CHECK(out2_ != NULL); \
        FUZZ_CHECK(strcmp(out_, out2_) == 0); \
    } while (0)
