/* Fused JPEG region decode + resize + flip into a batch buffer, on the system's libjpeg-turbo.
 *
 * decode_crop_resize(data, starts, ends, boxes, flips, out, threads=1, fast=True)
 *   data:   one buffer holding every JPEG of the batch
 *   starts, ends: int64[N], byte range of record i in data
 *   boxes:  int32[N, 4], (y, x, h, w) of the crop in stored-image pixels
 *   flips:  uint8[N], mirror the output left to right where nonzero
 *   out:    uint8[N, S, S, 3], C-contiguous, written in place
 * For each record: the smallest DCT scale n/8 that leaves >= oversample * S pixels across the
 * box in both directions, only the box's columns (jpeg_crop_scanline) and rows (jpeg_skip_scanlines), then
 * a separable bilinear resize with PIL's antialiasing filter (support widened by the
 * downscale factor) straight into out[i]. The GIL is released; `threads` POSIX threads share
 * the batch. A record that cannot be decoded raises DecodeError(index, message) after every
 * thread has finished; libjpeg errors come back through setjmp/longjmp, never exit().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

static PyObject *DecodeError;

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} error_mgr;

static void on_error(j_common_ptr cinfo) {
    error_mgr *err = (error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* A warning (corrupt or truncated data that libjpeg would pad) fails the record, as
 * simplejpeg / TurboJPEG do: a damaged image is never trained on silently. */
static void on_emit(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo);
}

/* PIL's bilinear ("triangle") filter coefficients for one axis: output pixel k samples input
 * [lo[k], lo[k] + n[k]) with weights w[k * maxn + t]. in0/in1: the box in input pixels. */
typedef struct {
    int *lo, *n;
    float *w;
    int maxn;
} coeffs;

static int make_coeffs(coeffs *c, double in0, double in1, int in_size, int out_size) {
    double scale = (in1 - in0) / out_size;
    double filterscale = scale > 1.0 ? scale : 1.0;
    double support = 1.0 * filterscale;
    int maxn = (int)ceil(support) * 2 + 1;
    c->maxn = maxn;
    c->lo = malloc(sizeof(int) * out_size);
    c->n = malloc(sizeof(int) * out_size);
    c->w = malloc(sizeof(float) * out_size * maxn);
    if (!c->lo || !c->n || !c->w) return -1;
    for (int k = 0; k < out_size; k++) {
        double center = in0 + (k + 0.5) * scale;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        int cnt = xmax - xmin;
        if (cnt > maxn) cnt = maxn;
        if (cnt < 1) {  /* cannot happen for a box inside the image; keep one tap */
            xmin = xmin >= in_size ? in_size - 1 : xmin;
            cnt = 1;
        }
        double total = 0.0;
        float *w = c->w + (size_t)k * maxn;
        for (int t = 0; t < cnt; t++) {
            double x = (t + xmin - center + 0.5) * ss;
            double v = x < 0 ? -x : x;
            v = v < 1.0 ? 1.0 - v : 0.0;
            w[t] = (float)v;
            total += v;
        }
        if (total <= 0.0) {
            w[0] = 1.0f;
            for (int t = 1; t < cnt; t++) w[t] = 0.0f;
        } else {
            for (int t = 0; t < cnt; t++) w[t] = (float)(w[t] / total);
        }
        c->lo[k] = xmin;
        c->n[k] = cnt;
    }
    return 0;
}

static void free_coeffs(coeffs *c) {
    free(c->lo);
    free(c->n);
    free(c->w);
}

typedef struct {
    const unsigned char *data;
    const int64_t *starts, *ends;
    const int32_t *boxes;
    const uint8_t *flips;
    uint8_t *out;
    Py_ssize_t n;
    int size;
    int fast;
    double oversample;
    int nthreads;
    int tid;
    /* the first failure of this thread */
    Py_ssize_t failed;
    char message[JMSG_LENGTH_MAX + 64];
} job;

/* Decodes record i into out (S x S x 3). Returns 0, or -1 with msg filled. */
static int decode_one(const unsigned char *src, size_t len, const int32_t *box, int flip,
                      int S, int fast, double oversample, uint8_t *out, char *msg,
                      size_t msglen) {
    struct jpeg_decompress_struct cinfo;
    error_mgr jerr;
    /* volatile: live across longjmp */
    unsigned char *volatile rows = NULL;
    float *volatile tmp = NULL;
    coeffs cx = {0}, cy = {0};
    volatile int have_coeffs = 0;

    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = on_error;
    jerr.pub.emit_message = on_emit;
    if (setjmp(jerr.jump)) {
        snprintf(msg, msglen, "%s", jerr.message);
        jpeg_destroy_decompress(&cinfo);
        free(rows);
        free(tmp);
        if (have_coeffs) { free_coeffs(&cx); free_coeffs(&cy); }
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    if (len == 0) {
        snprintf(msg, msglen, "empty JPEG record");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_mem_src(&cinfo, (unsigned char *)src, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int H = (int)cinfo.image_height, W = (int)cinfo.image_width;
    int by = box[0], bx = box[1], bh = box[2], bw = box[3];
    if (bh < 1 || bw < 1 || by < 0 || bx < 0 || by + bh > H || bx + bw > W) {
        snprintf(msg, msglen, "crop box (y=%d, x=%d, h=%d, w=%d) is outside the %dx%d image",
                 by, bx, bh, bw, W, H);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    /* Smallest n/8 with bw * n / 8 >= oversample * S and the same for bh (at most 8/8). */
    int side = bw < bh ? bw : bh;
    int num = (int)ceil(8.0 * S * oversample / side - 1e-9);
    if (num > 8) num = 8;
    if (num < 1) num = 1;
    cinfo.scale_num = num;
    cinfo.scale_denom = 8;
    cinfo.out_color_space = JCS_RGB;
    cinfo.dct_method = fast ? JDCT_IFAST : JDCT_ISLOW;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(msg, msglen, "CMYK JPEGs are not supported");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    int OH = (int)cinfo.output_height, OW = (int)cinfo.output_width;
    /* The box in output (scaled) pixels. */
    double fy = (double)OH / H, fx = (double)OW / W;
    double y0 = by * fy, y1 = (by + bh) * fy, x0 = bx * fx, x1 = (bx + bw) * fx;
    /* Input rows/columns the filters touch (support widened when downscaling). */
    double sy = (y1 - y0) / S, sx = (x1 - x0) / S;
    double supy = sy > 1.0 ? sy : 1.0, supx = sx > 1.0 ? sx : 1.0;
    int r0 = (int)floor(y0 - supy - 1), r1 = (int)ceil(y1 + supy + 1);
    int c0 = (int)floor(x0 - supx - 1), c1 = (int)ceil(x1 + supx + 1);
    if (r0 < 0) r0 = 0;
    if (c0 < 0) c0 = 0;
    if (r1 > OH) r1 = OH;
    if (c1 > OW) c1 = OW;
    JDIMENSION xoff = (JDIMENSION)c0, cw = (JDIMENSION)(c1 - c0);
    jpeg_crop_scanline(&cinfo, &xoff, &cw);  /* widens to iMCU edges */
    int RW = (int)cw, RH = r1 - r0;
    rows = malloc((size_t)RH * RW * 3);
    tmp = malloc(sizeof(float) * (size_t)RH * S * 3);
    if (!rows || !tmp) {
        snprintf(msg, msglen, "out of memory");
        jpeg_destroy_decompress(&cinfo);
        free(rows);
        free(tmp);
        return -1;
    }
    if (r0 > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)r0);
    while ((int)cinfo.output_scanline < r1) {
        JSAMPROW row = rows + (size_t)((int)cinfo.output_scanline - r0) * RW * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    /* The rest of the image is not needed. */
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);

    /* Coefficients over the decoded region's coordinates. */
    if (make_coeffs(&cx, x0 - xoff, x1 - xoff, RW, S) || make_coeffs(&cy, y0 - r0, y1 - r0, RH, S)) {
        snprintf(msg, msglen, "out of memory");
        free_coeffs(&cx); free_coeffs(&cy);
        free(rows);
        free(tmp);
        return -1;
    }
    have_coeffs = 1;
    /* Rows of the region the vertical pass reads. */
    int ry0 = cy.lo[0], ry1 = cy.lo[S - 1] + cy.n[S - 1];
    for (int r = ry0; r < ry1; r++) {
        const unsigned char *in = rows + (size_t)r * RW * 3;
        float *o = tmp + (size_t)r * S * 3;
        for (int k = 0; k < S; k++) {
            const float *w = cx.w + (size_t)k * cx.maxn;
            const unsigned char *p = in + (size_t)cx.lo[k] * 3;
            float a = 0.f, b = 0.f, c = 0.f;
            for (int t = 0; t < cx.n[k]; t++, p += 3) {
                a += w[t] * p[0];
                b += w[t] * p[1];
                c += w[t] * p[2];
            }
            int kk = flip ? S - 1 - k : k;
            o[kk * 3] = a;
            o[kk * 3 + 1] = b;
            o[kk * 3 + 2] = c;
        }
    }
    for (int k = 0; k < S; k++) {
        const float *w = cy.w + (size_t)k * cy.maxn;
        uint8_t *o = out + (size_t)k * S * 3;
        for (int q = 0; q < S * 3; q++) {
            float v = 0.f;
            const float *p = tmp + (size_t)cy.lo[k] * S * 3 + q;
            for (int t = 0; t < cy.n[k]; t++, p += (size_t)S * 3) v += w[t] * *p;
            int iv = (int)(v + 0.5f);
            o[q] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
        }
    }
    free_coeffs(&cx);
    free_coeffs(&cy);
    free(rows);
    free(tmp);
    return 0;
}

static void *run_job(void *arg) {
    job *j = (job *)arg;
    size_t plane = (size_t)j->size * j->size * 3;
    for (Py_ssize_t i = j->tid; i < j->n; i += j->nthreads) {
        char msg[JMSG_LENGTH_MAX + 64];
        int64_t s = j->starts[i], e = j->ends[i];
        if (decode_one(j->data + s, (size_t)(e - s), j->boxes + 4 * i, j->flips[i], j->size,
                       j->fast, j->oversample, j->out + plane * i, msg, sizeof msg)) {
            j->failed = i;
            snprintf(j->message, sizeof j->message, "%s", msg);
            break;
        }
    }
    return NULL;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name,
                      Py_ssize_t itemsize, Py_ssize_t count) {
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (count >= 0 && view->len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, view->len,
                     itemsize * count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *decode_crop_resize(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "starts", "ends", "boxes", "flips", "out", "threads",
                             "fast", "oversample", NULL};
    PyObject *o_data, *o_starts, *o_ends, *o_boxes, *o_flips, *o_out;
    int threads = 1, fast = 1;
    double oversample = 1.0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOO|ipd", kwlist, &o_data, &o_starts,
                                     &o_ends, &o_boxes, &o_flips, &o_out, &threads, &fast,
                                     &oversample))
        return NULL;
    if (!(oversample >= 1.0 && oversample <= 8.0)) {
        PyErr_SetString(PyExc_ValueError, "oversample must be in [1, 8]");
        return NULL;
    }
    Py_buffer data, starts, ends, boxes, flips, out;
    if (get_buffer(o_data, &data, 0, "data", 1, -1) < 0) return NULL;
    if (get_buffer(o_starts, &starts, 0, "starts", 1, -1) < 0) goto e0;
    Py_ssize_t n = starts.len / 8;
    if (starts.len % 8) {
        PyErr_SetString(PyExc_ValueError, "starts must be int64");
        goto e1;
    }
    if (get_buffer(o_ends, &ends, 0, "ends", 8, n) < 0) goto e1;
    if (get_buffer(o_boxes, &boxes, 0, "boxes", 16, n) < 0) goto e2;
    if (get_buffer(o_flips, &flips, 0, "flips", 1, n) < 0) goto e3;
    if (get_buffer(o_out, &out, 1, "out", 1, -1) < 0) goto e4;
    int size = 0;
    if (n > 0) {
        Py_ssize_t plane = out.len / n;
        size = (int)floor(sqrt((double)plane / 3.0) + 0.5);
        if (out.len % n || (Py_ssize_t)size * size * 3 != plane || size < 1) {
            PyErr_SetString(PyExc_ValueError, "out must be uint8[N, S, S, 3]");
            goto e5;
        }
    }
    const int64_t *st = (const int64_t *)starts.buf, *en = (const int64_t *)ends.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (st[i] < 0 || en[i] < st[i] || en[i] > data.len) {
            PyErr_Format(PyExc_ValueError, "record %zd: byte range %lld..%lld is outside the "
                         "data (%zd bytes)", i, (long long)st[i], (long long)en[i], data.len);
            goto e5;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (n > 0 && threads > n) threads = (int)n;
    job jobs[64];
    pthread_t tids[64];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){data.buf, st, en, boxes.buf, flips.buf, out.buf, n, size, fast,
                        oversample, threads, t, -1, ""};
    }
    Py_BEGIN_ALLOW_THREADS
    if (threads == 1) {
        run_job(&jobs[0]);
    } else {
        int started = 0;
        for (int t = 0; t < threads; t++) {
            if (pthread_create(&tids[t], NULL, run_job, &jobs[t]) != 0) break;
            started++;
        }
        for (int t = started; t < threads; t++) run_job(&jobs[t]);
        for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    }
    Py_END_ALLOW_THREADS
    Py_ssize_t failed = -1;
    const char *message = NULL;
    for (int t = 0; t < threads; t++) {
        if (jobs[t].failed >= 0 && (failed < 0 || jobs[t].failed < failed)) {
            failed = jobs[t].failed;
            message = jobs[t].message;
        }
    }
    if (failed >= 0) {
        PyObject *exc_args = Py_BuildValue("(ns)", failed, message);
        if (exc_args) {
            PyErr_SetObject(DecodeError, exc_args);
            Py_DECREF(exc_args);
        }
        goto e5;
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&flips);
    PyBuffer_Release(&boxes);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
e5:
    PyBuffer_Release(&out);
e4:
    PyBuffer_Release(&flips);
e3:
    PyBuffer_Release(&boxes);
e2:
    PyBuffer_Release(&ends);
e1:
    PyBuffer_Release(&starts);
e0:
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_crop_resize", (PyCFunction)(void (*)(void))decode_crop_resize,
     METH_VARARGS | METH_KEYWORDS,
     "decode_crop_resize(data, starts, ends, boxes, flips, out, threads=1, fast=True, "
     "oversample=1.0)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegcrop",
                                    "Fused JPEG region decode + resize (libjpeg-turbo).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__jpegcrop(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    DecodeError = PyErr_NewException("_jpegcrop.DecodeError", PyExc_ValueError, NULL);
    if (!DecodeError || PyModule_AddObject(m, "DecodeError", DecodeError) < 0) {
        Py_XDECREF(DecodeError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(DecodeError);
    PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION);
    return m;
}
