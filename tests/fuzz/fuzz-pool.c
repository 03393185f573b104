/* libFuzzer target for storage pool XML: parse, and on success format, re-parse
 * and compare, so that both crashes and formatter/parser disagreements surface. */
#include "fuzz-common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ROUND_TRIP(VsPoolDef, vs_pool_def_parse_string,
                    vs_pool_def_format(def_), vs_pool_def_format(def2_));
    return 0;
}
