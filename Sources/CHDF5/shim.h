#include <hdf5.h>
/* H5T_NATIVE_* and H5F_ACC_* are macros Swift cannot import: expose them as functions. */
static inline hid_t dsconv_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t dsconv_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t dsconv_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t dsconv_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline unsigned dsconv_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned dsconv_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline hid_t dsconv_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t dsconv_h5s_all(void) { return H5S_ALL; }
static inline hid_t dsconv_h5t_c_s1(void) { return H5T_C_S1; }
static inline unsigned dsconv_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline hid_t H5E_DEFAULT_shim(void) { return H5E_DEFAULT; }
static inline hid_t dsconv_h5p_file_access(void) { return H5P_FILE_ACCESS; }
