/* libFuzzer target for disk-only snapshot XML: parse, format, re-parse, compare. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ROUND_TRIP(VsSnapshotDef, vs_snapshot_def_parse_string,
                    vs_snapshot_def_format(def_), vs_snapshot_def_format(def2_));
    return 0;
}
