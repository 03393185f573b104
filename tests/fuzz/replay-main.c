/* A main() for the fuzz targets in builds without libFuzzer: runs every file of
 * the directories (or files) given on the command line through the target once,
 * so that the seed corpus and every crash ever found stay regression tests in the
 * ordinary gcc build. A failing input aborts inside the target. */
#include "fuzz-common.h"

static guint
replay_path(const char *path)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *contents = NULL;
    gsize len = 0;
    guint count = 0;

    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_autoptr(GDir) dir = g_dir_open(path, 0, &error);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const char *name;

        if (!dir) {
            fprintf(stderr, "replay: %s\n", error->message);
            exit(1);
        }
        while ((name = g_dir_read_name(dir)))
            g_ptr_array_add(names, g_build_filename(path, name, NULL));
        for (guint i = 0; i < names->len; i++)
            count += replay_path(g_ptr_array_index(names, i));
        return count;
    }
    if (!g_file_get_contents(path, &contents, &len, &error)) {
        fprintf(stderr, "replay: %s\n", error->message);
        exit(1);
    }
    LLVMFuzzerTestOneInput((const uint8_t *)contents, len);
    return 1;
}

int
main(int argc, char **argv)
{
    guint count = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR-OR-FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        count += replay_path(argv[i]);
    if (!count) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    printf("replayed %u inputs\n", count);
    return 0;
}
