/* The JSON the commands print (--json): the member helpers every result shape
 * is written with, so that "null where it does not apply" is spelt one way, and
 * the final text. The key set of each shape is an interface for scripts (see
 * virtsnap(1)); these helpers never leave a key out. */
#include "config.h"
#include "virtsnap.h"

void
vs_json_add_str(JsonBuilder *b, const char *key, const char *value)
{
    json_builder_set_member_name(b, key);
    value ? json_builder_add_string_value(b, value) : json_builder_add_null_value(b);
}

void
vs_json_add_int(JsonBuilder *b, const char *key, gint64 value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, value);
}

void
vs_json_add_int_or_null(JsonBuilder *b, const char *key, gint64 value)
{
    json_builder_set_member_name(b, key);
    value >= 0 ? json_builder_add_int_value(b, value) : json_builder_add_null_value(b);
}

void
vs_json_add_bool(JsonBuilder *b, const char *key, bool value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, value);
}

char *
vs_json_node_text(JsonNode *root, bool pretty)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, pretty);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat(text, "\n", NULL);
}

char *
vs_json_builder_text(JsonBuilder *b, bool pretty)
{
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    return vs_json_node_text(root, pretty);
}
