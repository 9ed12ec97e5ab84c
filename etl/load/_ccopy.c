/* Compiled COPY formatters (etl/load/copyformat.py): the same bytes as the Python formatters,
 * which stay the reference; tests compare the two on random rows.
 *
 * format_rows(rows, kinds, dumps) -> bytes            PostgreSQL's COPY text format
 * format_binary(rows, kinds, dumps, fields) -> bytes  its binary format, without header/trailer
 *   rows    a list of tuples, one per row, in the table's column order
 *   kinds   a tuple of column kinds: TEXT, INT (bigint), INT4, BOOL, TIME (timestamptz) or
 *           JSON (jsonb), plus NOT_NULL when the column may not hold None
 *   dumps   the JSON encoder for JSON columns: returns str or UTF-8 bytes
 *   fields  the field count each binary row starts with (more than the columns when the
 *           caller appends fields of its own), or -1 for none (fields to append to a row)
 * Text: one line per row, columns tab-separated, NULL as \N, backslash, tab, newline and
 * carriage return escaped as \\, \t, \n and \r. Binary: per field a 32-bit big-endian length
 * (-1: NULL) and the value: int8/int4 big-endian, bool one byte, timestamptz microseconds
 * since 2000-01-01 UTC, jsonb the version byte 1 and the JSON text, text its UTF-8 bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

enum { K_TEXT = 0, K_INT = 1, K_BOOL = 2, K_TIME = 3, K_JSON = 4, K_INT4 = 5, NOT_NULL = 8 };

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} buffer;

static int
reserve(buffer *b, Py_ssize_t more)
{
    if (b->size + more <= b->capacity)
        return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + more) {
        if (capacity > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int
put(buffer *b, const char *s, Py_ssize_t n)
{
    if (reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->size, s, (size_t)n);
    b->size += n;
    return 0;
}

static int
put_escaped(buffer *b, const char *s, Py_ssize_t n)
{
    /* Worst case doubles every byte; most values need no escape at all. */
    if (reserve(b, 2 * n) < 0)
        return -1;
    char *out = b->data + b->size;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        default: *out++ = c;
        }
    }
    b->size = out - b->data;
    return 0;
}

static int
put_text(buffer *b, PyObject *value)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    return s == NULL ? -1 : put_escaped(b, s, n);
}

static int
put_str_of(buffer *b, PyObject *value, int escaped)
{
    PyObject *text = PyObject_Str(value);
    if (text == NULL)
        return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    int r = s == NULL ? -1 : (escaped ? put_escaped(b, s, n) : put(b, s, n));
    Py_DECREF(text);
    return r;
}

static int
put_int(buffer *b, PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0 && !(v == -1 && PyErr_Occurred())) {
            char digits[24];
            int n = snprintf(digits, sizeof digits, "%lld", v);
            return put(b, digits, n);
        }
        PyErr_Clear();
    }
    return put_str_of(b, value, 0); /* as str() writes it, like the Python formatter */
}

static int
put_time(buffer *b, PyObject *value)
{
    /* isoformat() of an aware UTC datetime: the common case, written here; anything else
     * (another offset, a naive or non-datetime value) is written by its own isoformat(). */
    if (PyDateTime_CheckExact(value) && PyDateTime_DATE_GET_TZINFO(value) == PyDateTime_TimeZone_UTC) {
        char text[40];
        int n;
        int us = PyDateTime_DATE_GET_MICROSECOND(value);
        if (us)
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00",
                         PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                         PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                         PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value), us);
        else
            n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d+00:00",
                         PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                         PyDateTime_GET_DAY(value), PyDateTime_DATE_GET_HOUR(value),
                         PyDateTime_DATE_GET_MINUTE(value), PyDateTime_DATE_GET_SECOND(value));
        return put(b, text, n);
    }
    PyObject *text = PyObject_CallMethod(value, "isoformat", NULL);
    if (text == NULL)
        return -1;
    int r = PyUnicode_Check(text) ? put_text(b, text) : put_str_of(b, text, 1);
    Py_DECREF(text);
    return r;
}

/* dumps(value) as UTF-8: the buffer lives as long as *text, which the caller releases. */
static const char *
json_utf8(PyObject *dumps, PyObject *value, PyObject **text, Py_ssize_t *n)
{
    *text = PyObject_CallOneArg(dumps, value);
    if (*text == NULL)
        return NULL;
    if (PyBytes_Check(*text)) {
        *n = PyBytes_GET_SIZE(*text);
        return PyBytes_AS_STRING(*text);
    }
    if (PyUnicode_Check(*text))
        return PyUnicode_AsUTF8AndSize(*text, n);
    PyErr_SetString(PyExc_TypeError, "the JSON encoder must return str or bytes");
    return NULL;
}

static int
put_json(buffer *b, PyObject *value, PyObject *dumps)
{
    PyObject *text;
    Py_ssize_t n;
    const char *s = json_utf8(dumps, value, &text, &n);
    int r = s == NULL ? -1 : put_escaped(b, s, n);
    Py_XDECREF(text);
    return r;
}

/* A value that is not None, as COPY text. */
static int
put_value(buffer *b, PyObject *value, long kind, PyObject *dumps)
{
    switch (kind & ~NOT_NULL) {
    case K_TEXT:
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "a text column holds %.100s", Py_TYPE(value)->tp_name);
            return -1;
        }
        return put_text(b, value);
    case K_INT:
    case K_INT4:
        return put_int(b, value);
    case K_BOOL: {
        int truth = PyObject_IsTrue(value);
        return truth < 0 ? -1 : put(b, truth ? "t" : "f", 1);
    }
    case K_TIME:
        return put_time(b, value);
    case K_JSON:
        return put_json(b, value, dumps);
    default:
        PyErr_Format(PyExc_ValueError, "unknown column kind %ld", kind);
        return -1;
    }
}

/* ---- binary ------------------------------------------------------------------------------ */

#define MAX_FIELD 0x3fffffff /* PostgreSQL refuses a field of 1 GB or more */

static int
put_be(buffer *b, unsigned long long v, int bytes)
{
    if (reserve(b, bytes) < 0)
        return -1;
    unsigned char *out = (unsigned char *)b->data + b->size;
    for (int i = bytes - 1; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    b->size += bytes;
    return 0;
}

static int
put_sized(buffer *b, const char *prefix, Py_ssize_t prefix_size, const char *s, Py_ssize_t n)
{
    if (n > MAX_FIELD - prefix_size) {
        PyErr_SetString(PyExc_ValueError, "a value larger than PostgreSQL's 1 GB field limit");
        return -1;
    }
    if (put_be(b, (unsigned long long)(n + prefix_size), 4) < 0 || put(b, prefix, prefix_size) < 0)
        return -1;
    return put(b, s, n);
}

static int
put_binary_int(buffer *b, PyObject *value, int bytes)
{
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(PyExc_TypeError, "an integer column holds %.100s", Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || (bytes == 4 && (v < INT32_MIN || v > INT32_MAX))) {
        PyErr_Format(PyExc_OverflowError, "%d-byte integer column: value out of range", bytes);
        return -1;
    }
    if (put_be(b, (unsigned long long)bytes, 4) < 0)
        return -1;
    return put_be(b, (unsigned long long)v, bytes);
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

#define DAYS_1970_TO_2000 10957LL
#define US_PER_DAY 86400000000LL

static int
put_binary_time(buffer *b, PyObject *value)
{
    if (!PyDateTime_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a timestamp column holds %.100s", Py_TYPE(value)->tp_name);
        return -1;
    }
    long long offset_us = 0;
    if (PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC) {
        /* Any other zone: the offset it gives (the normalizer only ever writes UTC). */
        PyObject *offset = PyObject_CallMethod(value, "utcoffset", NULL);
        if (offset == NULL)
            return -1;
        if (!PyDelta_Check(offset)) {
            Py_DECREF(offset);
            PyErr_SetString(PyExc_TypeError, "a naive datetime in a timestamptz column");
            return -1;
        }
        offset_us = PyDateTime_DELTA_GET_DAYS(offset) * US_PER_DAY +
                    PyDateTime_DELTA_GET_SECONDS(offset) * 1000000LL +
                    PyDateTime_DELTA_GET_MICROSECONDS(offset);
        Py_DECREF(offset);
    }
    long long days = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                                     PyDateTime_GET_DAY(value)) - DAYS_1970_TO_2000;
    long long seconds = PyDateTime_DATE_GET_HOUR(value) * 3600LL +
                        PyDateTime_DATE_GET_MINUTE(value) * 60LL + PyDateTime_DATE_GET_SECOND(value);
    long long us = days * US_PER_DAY + seconds * 1000000LL + PyDateTime_DATE_GET_MICROSECOND(value) -
                   offset_us;
    if (put_be(b, 8, 4) < 0)
        return -1;
    return put_be(b, (unsigned long long)us, 8);
}

static int
put_binary_text(buffer *b, PyObject *value, const char *prefix, Py_ssize_t prefix_size)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    return s == NULL ? -1 : put_sized(b, prefix, prefix_size, s, n);
}

static int
put_binary_json(buffer *b, PyObject *value, PyObject *dumps)
{
    PyObject *text;
    Py_ssize_t n;
    const char *s = json_utf8(dumps, value, &text, &n);
    int r = s == NULL ? -1 : put_sized(b, "\x01", 1, s, n);
    Py_XDECREF(text);
    return r;
}

/* A value that is not None, as a COPY binary field. */
static int
put_binary_value(buffer *b, PyObject *value, long kind, PyObject *dumps)
{
    switch (kind & ~NOT_NULL) {
    case K_TEXT:
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "a text column holds %.100s", Py_TYPE(value)->tp_name);
            return -1;
        }
        return put_binary_text(b, value, "", 0);
    case K_INT:
        return put_binary_int(b, value, 8);
    case K_INT4:
        return put_binary_int(b, value, 4);
    case K_BOOL: {
        int truth = PyObject_IsTrue(value);
        return truth < 0 || put_be(b, 1, 4) < 0 ? -1 : put(b, truth ? "\x01" : "\x00", 1);
    }
    case K_TIME:
        return put_binary_time(b, value);
    case K_JSON:
        return put_binary_json(b, value, dumps);
    default:
        PyErr_Format(PyExc_ValueError, "unknown column kind %ld", kind);
        return -1;
    }
}

typedef int (*put_value_fn)(buffer *, PyObject *, long, PyObject *);

/* None: NULL in either format, unless the column may not hold it. */
static int
put_null(buffer *b, long kind, int binary)
{
    if (kind & NOT_NULL) {
        PyErr_SetString(PyExc_TypeError, "None in a column that may not be null");
        return -1;
    }
    return binary ? put_be(b, 0xffffffffULL, 4) : put(b, "\\N", 2);
}

/* Both formats: parse the arguments, then each row through `put_one`. */
static PyObject *
format_with(PyObject *rows, PyObject *kinds_tuple, PyObject *dumps, long fields, int binary)
{
    if (!PyList_Check(rows) || !PyTuple_Check(kinds_tuple)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list and kinds a tuple");
        return NULL;
    }
    Py_ssize_t width = PyTuple_GET_SIZE(kinds_tuple);
    long kinds[64];
    if (width == 0 || width > 64) {
        PyErr_SetString(PyExc_ValueError, "a table has 1 to 64 columns");
        return NULL;
    }
    if (binary && (fields < -1 || fields > 1600)) {
        PyErr_SetString(PyExc_ValueError, "fields: -1 or a field count up to 1600");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        kinds[i] = PyLong_AsLong(PyTuple_GET_ITEM(kinds_tuple, i));
        if (kinds[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    put_value_fn put_one = binary ? put_binary_value : put_value;
    buffer b = {NULL, 0, 0};
    /* Rows are held while formatted: a JSON encoder runs Python code. */
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        Py_INCREF(row);
        int failed = 0;
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != width) {
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", r, width);
            failed = 1;
        }
        else if (binary && fields >= 0 && put_be(&b, (unsigned long long)fields, 2) < 0)
            failed = 1;
        for (Py_ssize_t i = 0; !failed && i < width; i++) {
            PyObject *value = PyTuple_GET_ITEM(row, i);
            if ((!binary && i && put(&b, "\t", 1) < 0) ||
                (value == Py_None ? put_null(&b, kinds[i], binary)
                                  : put_one(&b, value, kinds[i], dumps)) < 0)
                failed = 1;
        }
        Py_DECREF(row);
        if (failed || (!binary && put(&b, "\n", 1) < 0)) {
            PyMem_Free(b.data);
            return NULL;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(b.data ? b.data : "", b.size);
    PyMem_Free(b.data);
    return out;
}

static PyObject *
format_rows(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "format_rows(rows: list, kinds: tuple, dumps)");
        return NULL;
    }
    return format_with(args[0], args[1], args[2], -1, 0);
}

static PyObject *
format_binary(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "format_binary(rows: list, kinds: tuple, dumps, fields: int)");
        return NULL;
    }
    long fields = PyLong_AsLong(args[3]);
    if (fields == -1 && PyErr_Occurred())
        return NULL;
    return format_with(args[0], args[1], args[2], fields, 1);
}

static PyMethodDef methods[] = {
    {"format_rows", (PyCFunction)(void (*)(void))format_rows, METH_FASTCALL,
     "format_rows(rows, kinds, dumps) -> bytes: rows as PostgreSQL COPY text lines."},
    {"format_binary", (PyCFunction)(void (*)(void))format_binary, METH_FASTCALL,
     "format_binary(rows, kinds, dumps, fields) -> bytes: rows in COPY's binary format."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "etl.load._ccopy",
    .m_doc = "Compiled COPY formatters (the Python formatters in copyformat.py are the reference).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__ccopy(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    /* Bumped whenever the interface copyformat.py relies on changes (see etl/compiled.py). */
    if (PyModule_AddIntConstant(module, "ABI_VERSION", 2) < 0 ||
        PyModule_AddIntConstant(module, "TEXT", K_TEXT) < 0 ||
        PyModule_AddIntConstant(module, "INT", K_INT) < 0 ||
        PyModule_AddIntConstant(module, "BOOL", K_BOOL) < 0 ||
        PyModule_AddIntConstant(module, "TIME", K_TIME) < 0 ||
        PyModule_AddIntConstant(module, "JSON", K_JSON) < 0 ||
        PyModule_AddIntConstant(module, "INT4", K_INT4) < 0 ||
        PyModule_AddIntConstant(module, "NOT_NULL", NOT_NULL) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
