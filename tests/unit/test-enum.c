/* The enum string macro (util/vs-enum.h) and the tables built with it in xml/:
 * every value spells and parses back to itself, a value without a spelling
 * (NULL entry) is never the result of a parse, and what is unknown, NULL or out
 * of range gives -1 or NULL rather than a neighbour's entry. */
#include "config.h"
#include "vs-enum.h"
#include "vs-xml.h"

typedef enum { COLOUR_UNSET, COLOUR_RED, COLOUR_GREEN, COLOUR_LAST } Colour;

VS_ENUM_IMPL_STATIC(colour, Colour, COLOUR_LAST, NULL, "red", "green")

static void
test_macro(void)
{
    g_assert_cmpstr(colour_to_string(COLOUR_RED), ==, "red");
    g_assert_cmpstr(colour_to_string(COLOUR_GREEN), ==, "green");
    g_assert_null(colour_to_string(COLOUR_UNSET));
    g_assert_null(colour_to_string(COLOUR_LAST));
    g_assert_null(colour_to_string((Colour)-1));
    g_assert_cmpint(colour_from_string("green"), ==, COLOUR_GREEN);
    g_assert_cmpint(colour_from_string("red"), ==, COLOUR_RED);
    g_assert_cmpint(colour_from_string("blue"), ==, -1);
    g_assert_cmpint(colour_from_string(""), ==, -1);
    g_assert_cmpint(colour_from_string("Red"), ==, -1);
    g_assert_cmpint(colour_from_string(NULL), ==, -1);
}

static void
test_xml_tables(void)
{
    for (int i = 0; i < VS_POOL_LAST; i++)
        g_assert_cmpint(vs_pool_type_from_string(vs_pool_type_to_string(i)), ==, i);
    for (int i = 0; i < VS_DISK_TYPE_LAST; i++)
        g_assert_cmpint(vs_disk_type_from_string(vs_disk_type_to_string(i)), ==, i);
    for (int i = 0; i < VS_DISK_DEVICE_LAST; i++)
        g_assert_cmpint(vs_disk_device_from_string(vs_disk_device_to_string(i)), ==, i);
    g_assert_cmpstr(vs_pool_type_to_string(VS_POOL_ISCSI_DIRECT), ==, "iscsi-direct");
    g_assert_cmpstr(vs_pool_type_to_string(VS_POOL_VSTORAGE), ==, "vstorage");
    g_assert_cmpstr(vs_disk_type_to_string(VS_DISK_TYPE_VHOSTVDPA), ==, "vhostvdpa");
    g_assert_cmpstr(vs_disk_device_to_string(VS_DISK_DEVICE_LUN), ==, "lun");
    g_assert_null(vs_pool_type_to_string(VS_POOL_LAST));
    g_assert_cmpint(vs_disk_type_from_string("nfs"), ==, -1);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/enum/macro", test_macro);
    g_test_add_func("/enum/xml-tables", test_xml_tables);
    return g_test_run();
}
