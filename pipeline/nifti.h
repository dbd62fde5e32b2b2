/*
 * NIfTI-1 / NIfTI-2 reader and writer (pipeline/nifti.c), .nii and .nii.gz.
 *
 * Reading: the header is validated (sizeof_hdr 348 or 540 in either byte
 * order, magic "n+1"/"n+2", dims >= 1, at most 7 axes, the data size checked
 * against the file size before anything is allocated), the voxels are read,
 * byte-swapped to the host order and kept in their stored type. Conversions
 * to float/double apply scl_slope/scl_inter (slope 0 or non-finite = none,
 * as the standard says). Every error names the file and the problem.
 *
 * Axes: dim[1..ndim] in the file's order (i, j, k, t, channels); voxel
 * (i, j, k) is data[i + ni * (j + nj * k)] (i fastest), exactly as stored.
 * spacing = pixdim[1..ndim] (absolute values, as float64 of the stored value).
 *
 * Writing: the datatype and dims of the image, version 1 or 2, gzip when
 * the path ends in ".gz"; qform/sform are written as a plain scaling by
 * pixdim (sform_code 1) unless the image carries its own srow.
 */
#ifndef SB_NIFTI_H
#define SB_NIFTI_H

#include "../core/sambench.h"

#include <stddef.h>
#include <stdint.h>

/* NIfTI datatype codes (nifti1.h). */
enum sb_nifti_type {
    SB_NIFTI_UINT8 = 2,
    SB_NIFTI_INT16 = 4,
    SB_NIFTI_INT32 = 8,
    SB_NIFTI_FLOAT32 = 16,
    SB_NIFTI_FLOAT64 = 64,
    SB_NIFTI_INT8 = 256,
    SB_NIFTI_UINT16 = 512,
    SB_NIFTI_UINT32 = 768,
    SB_NIFTI_INT64 = 1024,
    SB_NIFTI_UINT64 = 1280
};

#define SB_NIFTI_MAX_DIMS 7

typedef struct sb_nifti {
    int version;              /* 1 or 2 */
    int ndim;                 /* dim[0] */
    int64_t dim[8];           /* dim[1..ndim] valid, the rest 1 */
    double pixdim[8];         /* pixdim[1..ndim]: voxel size per axis (absolute value) */
    int datatype;             /* enum sb_nifti_type */
    int bytes_per_voxel;
    double scl_slope, scl_inter;
    int qform_code, sform_code;
    double srow[3][4];        /* sform affine rows (valid when sform_code > 0) */
    int xyzt_units;
    char descrip[81];
    int64_t nvox;             /* product of dim[1..ndim] */
    void *data;               /* nvox voxels of `datatype`, host byte order (malloc'ed) */
} sb_nifti;

/* Reads the whole image. On failure *img is left empty (data NULL). */
int sb_nifti_read(sb_nifti *img, const char *path, sb_error *err);
/* The same from a memory buffer (plain or gzip); `name` is used in messages. */
int sb_nifti_read_mem(sb_nifti *img, const void *buf, size_t len, const char *name, sb_error *err);
/* Reads only the header (no data). */
int sb_nifti_read_header(sb_nifti *img, const char *path, sb_error *err);
/* Frees img->data and clears the struct. NULL is a no-op. */
void sb_nifti_free(sb_nifti *img);

/* Fills img for writing: version 1, dims and spacing (NULL = 1), datatype,
 * slope 1 / inter 0, data = calloc'ed zeros. */
int sb_nifti_init(sb_nifti *img, int datatype, int ndim, const int64_t *dims, const double *spacing,
                  sb_error *err);
/* Writes img (img->version 1 or 2); gzip-compressed if path ends in ".gz". */
int sb_nifti_write(const sb_nifti *img, const char *path, sb_error *err);

/* Value of voxel idx as double, raw (no scaling). */
double sb_nifti_get(const sb_nifti *img, int64_t idx);
/* Voxels as float / double with scl_slope / scl_inter applied; malloc'ed. */
int sb_nifti_to_f32(const sb_nifti *img, float **out, sb_error *err);
int sb_nifti_to_f64(const sb_nifti *img, double **out, sb_error *err);
/* Size in bytes of one voxel of a datatype, 0 if unsupported. */
int sb_nifti_type_size(int datatype);
const char *sb_nifti_type_name(int datatype);

#endif
