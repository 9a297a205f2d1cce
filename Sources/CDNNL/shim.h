#include <oneapi/dnnl/dnnl.h>
// Debian's oneDNN runs on OpenMP (libgomp); its thread count is OpenMP's.
void omp_set_num_threads(int count);
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
// libgomp's entry point for `#pragma omp parallel`: runs fn(data) on a team of num_threads
// (0: the default), this thread included, and returns when all are done.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
