/* libFuzzer target for storage volume XML: parse, format, re-parse, compare. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ROUND_TRIP(VsVolDef, vs_vol_def_parse_string,
                    vs_vol_def_format(def_), vs_vol_def_format(def2_));
    return 0;
}
