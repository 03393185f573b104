/* libFuzzer's optional initialisation hook, linked into every target of the
 * -Dfuzzing=true build: VIRTSNAP_FUZZ_SECONDS overrides the run time that meson
 * configured, without reconfiguring (libFuzzer lets a later flag win). */
#include "fuzz-common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seconds = g_getenv("VIRTSNAP_FUZZ_SECONDS");
    static char **args;

    if (!seconds || !*seconds || args)
        return 0;
    args = g_new0(char *, *argc + 2);
    memcpy(args, *argv, sizeof(char *) * *argc);
    args[*argc] = g_strdup_printf("-max_total_time=%s", seconds);
    *argc += 1;
    *argv = args;
    return 0;
}
