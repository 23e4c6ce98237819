#include <cblas.h>
/// openblas_set_num_threads lives in cblas.h on Debian; re-declared for other layouts.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
/// LAPACK (Fortran ABI, inside libopenblas): Cholesky factorisation and inverse from it.
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info);
