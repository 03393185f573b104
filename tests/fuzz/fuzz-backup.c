/* libFuzzer target for domain backup XML: parse, format, re-parse, compare. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ROUND_TRIP(VsBackupDef, vs_backup_def_parse_string,
                    vs_backup_def_format(def_), vs_backup_def_format(def2_));
    return 0;
}
