/* A JPEG file's pixels as RGBX rows, decoded by the libjpeg that Pillow itself uses
 * (datasets/jpeg.py links that library and checks the values against Pillow's).
 * libjpeg's defaults are Pillow's for a full-size decode: accurate integer IDCT, fancy
 * chroma upsampling; only the output layout differs (4 bytes a pixel, X = 255), which
 * changes no value. Anything unusual (not 3-component YCbCr/RGB, 12-bit, a warning such
 * as corrupt or truncated data) is refused, and the caller lets Pillow do it. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>

struct failure { struct jpeg_error_mgr mgr; jmp_buf back; };

static void fail(j_common_ptr c) { longjmp(((struct failure *)c->err)->back, 1); }

static void note(j_common_ptr c, int level) {
    if (level < 0) c->err->num_warnings++;  /* a warning: refused below */
}

/* Returns 0 and fills out (rows of 4 * width bytes), 1 with *w, *h set if out is
 * smaller than 4 * w * h bytes, -1 if libjpeg failed or warned, -2 if the file is
 * not a plain 3-component 8-bit colour JPEG. */
int jpeg_rgbx(const unsigned char *data, unsigned long len, unsigned char *out,
              size_t capacity, int *w, int *h) {
    struct jpeg_decompress_struct cinfo;
    struct failure err;
    volatile int status = -1;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = fail;
    err.mgr.emit_message = note;
    if (setjmp(err.back)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.num_components != 3 || cinfo.data_precision != 8 ||
        (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_RGB)) {
        jpeg_destroy_decompress(&cinfo);
        return -2;
    }
    *w = (int)cinfo.image_width;
    *h = (int)cinfo.image_height;
    if ((size_t)4 * cinfo.image_width * cinfo.image_height > capacity) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    cinfo.out_color_space = JCS_EXT_RGBX;
    jpeg_start_decompress(&cinfo);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)4 * cinfo.output_width * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    status = err.mgr.num_warnings ? -1 : 0;
    jpeg_destroy_decompress(&cinfo);
    return status;
}
