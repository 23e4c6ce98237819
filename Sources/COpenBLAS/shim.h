#include <cblas.h>
/// openblas_set_num_threads lives in cblas.h on Debian; re-declared for other layouts.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
