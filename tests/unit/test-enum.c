/* The enum string macro (util/include/vs-enum.h) and the tables built with it in xml/
 * and driver/ (the backup's option words, discovery's agent status):
 * every value spells and parses back to itself, a value without a spelling
 * (NULL entry) is never the result of a parse, and what is unknown, NULL or out
 * of range gives -1 or NULL rather than a neighbour's entry. */
#include "config.h"
#include "vs-enum.h"
#include "vs-xml.h"
#include "vs-backup.h"
#include "vs-driver.h"

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

/* Every word `virtsnap backup` accepted before the tables were macros, and only those. */
static void
test_driver_tables(void)
{
    static const struct { int (*from)(const char *); const char *word; int value; } words[] = {
        { vs_quiesce_mode_from_string, "try", VS_QUIESCE_TRY },
        { vs_quiesce_mode_from_string, "require", VS_QUIESCE_REQUIRE },
        { vs_quiesce_mode_from_string, "off", VS_QUIESCE_OFF },
        { vs_data_path_from_string, "auto", VS_DATA_PATH_AUTO },
        { vs_data_path_from_string, "direct", VS_DATA_PATH_DIRECT },
        { vs_data_path_from_string, "host", VS_DATA_PATH_HOST },
        { vs_backup_method_from_string, "overlay", VS_BACKUP_METHOD_OVERLAY },
        { vs_backup_method_from_string, "begin", VS_BACKUP_METHOD_BEGIN },
        { vs_backup_method_from_string, "auto", VS_BACKUP_METHOD_AUTO },
        { vs_backup_level_from_string, "full", VS_BACKUP_LEVEL_FULL },
        { vs_backup_level_from_string, "inc", VS_BACKUP_LEVEL_INC },
        { vs_backup_level_from_string, "diff", VS_BACKUP_LEVEL_DIFF },
        { vs_agent_status_from_string, "none", VS_AGENT_NONE },
        { vs_agent_status_from_string, "configured", VS_AGENT_CONFIGURED },
        { vs_agent_status_from_string, "responding", VS_AGENT_RESPONDING },
        /* not words */
        { vs_backup_level_from_string, "", -1 },
        { vs_backup_level_from_string, "default", -1 },
        { vs_backup_level_from_string, NULL, -1 },
        { vs_quiesce_mode_from_string, "Try", -1 },
        { vs_data_path_from_string, "nfs", -1 },
        { vs_backup_method_from_string, "pull", -1 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(words); i++)
        g_assert_cmpint(words[i].from(words[i].word), ==, words[i].value);
    g_assert_null(vs_backup_level_to_string(VS_BACKUP_LEVEL_DEFAULT));
    g_assert_cmpstr(vs_backup_level_to_string(VS_BACKUP_LEVEL_DIFF), ==, "diff");
    g_assert_cmpstr(vs_agent_status_to_string(VS_AGENT_RESPONDING), ==, "responding");
    g_assert_cmpstr(vs_quiesce_mode_to_string(VS_QUIESCE_REQUIRE), ==, "require");
    g_assert_cmpstr(vs_data_path_to_string(VS_DATA_PATH_HOST), ==, "host");
    g_assert_cmpstr(vs_backup_method_to_string(VS_BACKUP_METHOD_BEGIN), ==, "begin");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/enum/macro", test_macro);
    g_test_add_func("/enum/xml-tables", test_xml_tables);
    g_test_add_func("/enum/driver-tables", test_driver_tables);
    return g_test_run();
}
