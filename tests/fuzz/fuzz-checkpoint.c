/* libFuzzer target for checkpoint XML: parse, format, re-parse, compare. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ROUND_TRIP(VsCheckpointDef, vs_checkpoint_def_parse_string,
                    vs_checkpoint_def_format(def_), vs_checkpoint_def_format(def2_));
    return 0;
}
