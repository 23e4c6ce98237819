/* The experimental API (ZSTD_compressSequences) is exported by libzstd.so; dsconv uses it to
 * entropy-code a plane as literals only. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

/* Experimental parameters are macros over ZSTD_c_experimentalParamN: expose them as functions. */
static inline ZSTD_cParameter dsconv_zstd_c_block_delimiters(void) { return ZSTD_c_blockDelimiters; }
